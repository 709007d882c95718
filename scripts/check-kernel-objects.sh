#!/usr/bin/env bash
# Reads the compiled CPU kernels, one object per instruction set (native/core/kernels_{baseline,avx2,avx512}.cpp),
# and fails when one of them could run an instruction its CPU lacks or keeps a micro-kernel's vectors on the stack:
#  1. no weak (linker-merged) symbol: an inline function compiled here for AVX-512 could be picked by the linker
#     for the baseline code too;
#  2. the baseline object uses no AVX register or VEX instruction, and the AVX2 object no AVX-512 register or
#     instruction (zmm, opmask k, xmm16-31 / ymm16-31, EVEX-only mnemonics);
#  3. no spill: inside the micro-kernels (tile<...>, project_chunk<...>, project_pairs<...>) no vector register is stored to or loaded
#     from the stack.
# With --binary FILE (the addon, a test program): every function that uses an AVX register or instruction is one of
# the AVX2 or AVX-512 kernels, and only the AVX-512 kernels use AVX-512 registers; everything else is baseline.
# Prints one line per object; exits non-zero on a failure.
#   scripts/check-kernel-objects.sh OBJECT...        (ctest passes the objects; default: those under build/)
#   scripts/check-kernel-objects.sh --binary build/Release/uniroute.node
set -uo pipefail
if [ "${1:-}" = --binary ]; then
  f="${2:?--binary needs a file}"
  [ "$(uname -m)" = x86_64 ] || { echo "$f: not x86-64; nothing to check"; exit 0; }
  out=$(objdump -d -C --no-show-raw-insn "$f" | awk '
    /^[0-9a-f]+ <.*>:$/ { fn = $0; next }
    /%[yz]mm|\sv[a-z]+[0-9a-z]*\s/ {
      if (fn !~ /kernels_avx2::|kernels_avx512::/) bad[fn]++
      else if (fn ~ /kernels_avx2::/ && /%zmm|%k[0-7]|%[xy]mm(1[6-9]|2[0-9]|3[01])[^0-9]/) bad[fn]++
    }
    END { n = 0; for (g in bad) { n++; if (n <= 5) print "  " bad[g] " in " g }; print n + 0 }')
  n=$(echo "$out" | tail -1)
  if [ "$n" -eq 0 ]; then
    echo "$f: ok (AVX only in the avx2 and avx512 kernels, AVX-512 only in the avx512 ones)"
    exit 0
  fi
  echo "$f: FAILED: $n functions outside the kernels use AVX (or the AVX2 kernels AVX-512):"
  echo "$out" | sed '$d'
  exit 1
fi
objs=("$@")
if [ ${#objs[@]} -eq 0 ]; then
  mapfile -t objs < <(find build -path '*uniroute_kernels*' -name 'kernels_*.o' 2>/dev/null | sort)
fi
if [ ${#objs[@]} -eq 0 ]; then
  echo "check-kernel-objects: no kernel objects found (build first)"
  exit 1
fi
command -v objdump >/dev/null && command -v nm >/dev/null || { echo "check-kernel-objects: needs nm and objdump (binutils)"; exit 1; }
fail=0
# the micro-kernels read for spills (demangled name prefixes, an extended regular expression)
micro_kernels='tile<|project_chunk<|project_pairs<'
for o in "${objs[@]}"; do
  name=$(basename "$o")
  case "$name" in
    *baseline*) isa=baseline ;;
    *avx512*) isa=avx512 ;;
    *avx2*) isa=avx2 ;;
    *) echo "$name: not a kernel object"; fail=1; continue ;;
  esac
  problems=()
  weak=$(nm "$o" | awk '$2 ~ /^[WVu]$/ {print $3}')
  [ -n "$weak" ] && problems+=("weak symbols: $(echo "$weak" | head -3 | tr '\n' ' ')")
  asm=$(objdump -d --no-show-raw-insn "$o")
  if [ "$isa" = baseline ] && [ "$(uname -m)" = x86_64 ]; then
    bad=$(echo "$asm" | grep -cE '%[yz]mm|%k[0-7]|\sv[a-z]+[0-9a-z]*\s')
    [ "$bad" -gt 0 ] && problems+=("$bad AVX instructions in the baseline")
  elif [ "$isa" = avx2 ]; then
    bad=$(echo "$asm" | grep -cE '%zmm|%k[0-7]|%[xy]mm(1[6-9]|2[0-9]|3[01])\b|\svpternlog|\svpermt2|\svpermi2|\svcompress|\svexpand|\skmov')
    [ "$bad" -gt 0 ] && problems+=("$bad AVX-512 instructions in the AVX2 variant")
  fi
  # spills: vector registers to or from the stack inside a micro-kernel (demangled names)
  spills=$(objdump -d -C --no-show-raw-insn "$o" | awk -v re="$micro_kernels" '
    /^[0-9a-f]+ <.*>:$/ { inkernel = ($0 ~ re); fn = $0; next }
    inkernel && /%[xyz]mm[0-9]+/ && /(\(%rsp\)|-0x[0-9a-f]+\(%rbp\))/ { n++; if (n <= 3) print fn " " $0 }
    END { print n + 0 }')
  nspill=$(echo "$spills" | tail -1)
  [ "$nspill" -gt 0 ] && problems+=("$nspill vector stack accesses in micro-kernels: $(echo "$spills" | head -1)")
  kernels=$(objdump -d -C --no-show-raw-insn "$o" | grep -cE "^[0-9a-f]+ <.*($micro_kernels)")
  if [ ${#problems[@]} -eq 0 ]; then
    echo "$name ($isa): ok ($kernels micro-kernels, no spill, no weak symbol, no instruction beyond $isa)"
  else
    echo "$name ($isa): FAILED: ${problems[*]}"
    fail=1
  fi
done
exit $fail
