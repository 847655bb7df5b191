// g2w-convert: see `g2w-convert --help`. All logic lives in G2WCommandLine.ConvertCommand.
import G2WCommandLine
#if canImport(Glibc)
import Glibc
#endif

exit(ConvertCommand.main(Array(CommandLine.arguments.dropFirst())))
