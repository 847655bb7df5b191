// g2w-server: see `g2w-server --help`. All logic lives in G2WServer (the server) and
// G2WCommandLine.ServeCommand (the flags).
import G2WCommandLine
#if canImport(Glibc)
import Glibc
#endif

exit(ServeCommand.main(Array(CommandLine.arguments.dropFirst())))
