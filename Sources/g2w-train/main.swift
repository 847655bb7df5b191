// g2w-train: see `g2w-train --help`. All logic lives in G2WCommandLine.TrainCommand.
import G2WCommandLine
#if canImport(Glibc)
import Glibc
#endif

exit(TrainCommand.main(Array(CommandLine.arguments.dropFirst())))
