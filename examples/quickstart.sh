#!/usr/bin/env bash
# The README quickstart, end to end, on nothing but what the install brings (a few minutes on CPU).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# 1. The built-in reference gallery: 24 public generators, fingerprints of the shipped extractor.
# With no --gallery and no gallery of your own, identify uses the built-in one.
fpt gallery list --builtin
fpt identify "$HERE/images/astronaut.png" --top-k 3
# 2. A gallery of your own: three synthetic models, enrolled from 10 images each.
rm -rf demo && mkdir demo
python "$HERE/demo_data.py" photos demo/real
fpt synthesize --arch-grid "K=1,L=1,A=relu,N=none,S=post" --seeds 1 --max-steps 40 --real demo/real --out demo/pool.h5
python "$HERE/demo_data.py" render demo/pool.h5 demo/real demo/generated --per-model 16
for model in demo/generated/*/; do
  name=$(basename "$model")
  fpt gallery add "$name" "$model" --shots 10 --gallery demo/gallery.h5
done
fpt gallery list --gallery demo/gallery.h5
fpt identify demo/generated/K1L1UdArN0So/01[0-5].png --gallery demo/gallery.h5 --top-k 3
fpt verify demo/generated/K1L1UdArN0So/011.png demo/generated/K1L1UdArN0So/012.png   # two images of one model
fpt verify demo/generated/K1L1UdArN0So/011.png demo/generated/K1L1UbArN0So/011.png   # two models
fpt ffd demo/generated demo/generated --images-per-model 16
