// g2w-inspect: see `g2w-inspect --help`. All logic lives in G2WCommandLine.InspectCommand.
import G2WCommandLine
#if canImport(Glibc)
import Glibc
#endif

exit(InspectCommand.main(Array(CommandLine.arguments.dropFirst())))
