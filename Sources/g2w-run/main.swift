// g2w-run: see `g2w-run --help`. All logic lives in G2WCommandLine.RunCommand.
import G2WCommandLine
#if canImport(Glibc)
import Glibc
#endif

exit(RunCommand.main(Array(CommandLine.arguments.dropFirst())))
