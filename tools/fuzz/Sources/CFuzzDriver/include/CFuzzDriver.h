// libFuzzer's entry point for programs that have their own main() (LLVM >= 12). SwiftPM links an
// executable's main as `<module>_main`, so the targets define main with @main and hand over to
// libFuzzer through this instead of using libFuzzer's main().
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
