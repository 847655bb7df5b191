#!/bin/bash
# A/B harness for the decoding kernels (dev-time only; not part of the build). Compiles two
# versions of one kernel file into one binary, so that they run interleaved in the same minutes
# on a noisy machine, each timed against a plain read of the same bytes taken next to it.
#
#   tools/kernel_ab/build.sh quant A.c B.c      # two versions of Sources/CG2W/quant.c -> $OUT/ab
#   $OUT/ab 3 9                                 # q8_0 (type code 3), 9 rounds; 4 = q4_0
#   tools/kernel_ab/build.sh f16 A.c B.c        # two versions of Sources/CG2W/matmul.c -> $OUT/ab
#   $OUT/ab 1 9                                 # f16
#   tools/kernel_ab/build.sh small A.c B.c      # two versions of Sources/CG2W/smallbatch.c -> $OUT/sb
#   $OUT/sb 8 7                                 # T = 8 rows, 7 rounds
#
# ab's environment: FILE=model.g2w reads the weights from a mapped file (its bytes after the first
# MB; any file of the right size) instead of anonymous memory, LAYERS=1 leaves out the LM head,
# JOBS=N chunks per matrix (the session uses 4 for quantized types, two a thread), GAP=ns of serial work
# between the matrices. sb's: FILE as above, HOT=1 one 768x768 matrix again and again (in cache;
# HOT_ROWS=N: N x 768 instead).
# Single-thread probes beside it (build and run lines at their tops): one_thread.c, one decoding
# kernel in cache or streamed; small_one_thread.c, the small-batch product; tile_loop.c, the
# small-batch tile's instructions as a plain loop.
# The versions' exported kernel is renamed (objcopy) and everything else of B is made weak.
set -euo pipefail
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
out=${OUT:-/tmp/kernel_ab}; mkdir -p "$out"
kind=$1; a=$2; b=$3
cd "$root"
I="-I Sources/CG2W/include -I Sources/CG2W"
common="Sources/CG2W/convert.c Sources/CG2W/isa.c Sources/CG2W/bench.c Sources/CG2W/gemm.c Sources/CG2W/pool.c Sources/CG2W/attention.c"
rename() {  # object, version letter, symbols...
  local o=$1 v=$2; shift 2
  for s in "$@"; do objcopy --redefine-sym "$s=${v}_${s#g2w_}" "$o"; done
  objcopy --weaken "$o"
  for s in "$@"; do objcopy --globalize-symbol="${v}_${s#g2w_}" "$o"; done
}
case $kind in
quant)
  for v in A B; do src=$a; [ $v = B ] && src=$b
    clang -O2 $I -c "$src" -o "$out/$v.o"; rename "$out/$v.o" $v g2w_matvec_q8_0 g2w_matvec_q4_0
    objcopy --redefine-sym ${v}_matvec_q8_0=${v}_q8 --redefine-sym ${v}_matvec_q4_0=${v}_q4 "$out/$v.o"; done
  for v in A B; do clang -O2 $I -c Sources/CG2W/matmul.c -o "$out/F$v.o"; rename "$out/F$v.o" $v g2w_matvec_f16; objcopy --redefine-sym ${v}_matvec_f16=${v}_f16 "$out/F$v.o"; done
  clang -O2 $I tools/kernel_ab/ab.c "$out/A.o" "$out/B.o" "$out/FA.o" "$out/FB.o" Sources/CG2W/quant.c Sources/CG2W/matmul.c $common -lm -lpthread -o "$out/ab" ;;
f16)
  for v in A B; do src=$a; [ $v = B ] && src=$b
    clang -O2 $I -c "$src" -o "$out/F$v.o"; rename "$out/F$v.o" $v g2w_matvec_f16; objcopy --redefine-sym ${v}_matvec_f16=${v}_f16 "$out/F$v.o"; done
  for v in A B; do clang -O2 $I -c Sources/CG2W/quant.c -o "$out/$v.o"; rename "$out/$v.o" $v g2w_matvec_q8_0 g2w_matvec_q4_0
    objcopy --redefine-sym ${v}_matvec_q8_0=${v}_q8 --redefine-sym ${v}_matvec_q4_0=${v}_q4 "$out/$v.o"; done
  clang -O2 $I tools/kernel_ab/ab.c "$out/A.o" "$out/B.o" "$out/FA.o" "$out/FB.o" Sources/CG2W/quant.c Sources/CG2W/matmul.c $common -lm -lpthread -o "$out/ab" ;;
small)
  for v in A B; do src=$a; [ $v = B ] && src=$b
    clang -O2 $I -c "$src" -o "$out/S$v.o"; rename "$out/S$v.o" $v g2w_matmul_small; objcopy --redefine-sym ${v}_matmul_small=${v}_sb "$out/S$v.o"; done
  clang -O2 $I tools/kernel_ab/sb.c "$out/SA.o" "$out/SB.o" Sources/CG2W/smallbatch.c Sources/CG2W/quant.c Sources/CG2W/matmul.c $common -lm -lpthread -o "$out/sb" ;;
*) echo "usage: $0 quant|f16|small A.c B.c" >&2; exit 2 ;;
esac
echo "built $out/$([ $kind = small ] && echo sb || echo ab)"
