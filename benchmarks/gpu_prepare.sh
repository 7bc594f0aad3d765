#!/usr/bin/env bash
# Fetch what the GPU machine's image lacks for benchmarks/gpu.py, here (where the package registries
# are reachable): the project's pure dependencies as Python 3.12 x86-64 wheels into .whl/ and Debian's
# fitsverify (with its cfitsio) into .fitsverify/, both ignored by git.  Then print the command that
# installs them there and runs the benchmark.  Versions are those of requirements/lock-cpu.txt; the
# GPU image brings torch, numpy, scipy, pandas, pyarrow, pillow, pyyaml, matplotlib, scikit-learn, tqdm.
set -euo pipefail
cd "$(dirname "$0")/.."
lock() { grep -i "^$1==" requirements/lock-cpu.txt | head -n1; }
for d in .whl .fitsverify; do grep -qx "/$d/" .git/info/exclude || echo "/$d/" >> .git/info/exclude; done
rm -rf .whl .fitsverify && mkdir -p .whl .fitsverify
pkgs=()
for name in e2cnn zarr numcodecs donfig google-crc32c astropy pyerfa astropy-iers-data dask distributed \
            tblib zict locket partd tornado; do
    pin=$(lock "$name"); pkgs+=("${pin:-$name}")
done
platforms=()
for n in 17 27 28 31 34; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" --platform manylinux2014_x86_64 --platform any -d .whl "${pkgs[@]}"
(cd .fitsverify && apt-get download -q fitsverify "$(apt-cache depends fitsverify | awk '/Depends: libcfitsio/ {print $2; exit}')")
du -sh .whl .fitsverify
cat <<'CMD'
run on the GPU machine (carry .whl and .fitsverify):
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit; for f in .fitsverify/*.deb; do dpkg -x "$f" /tmp/fv; done; \
  export PATH=/tmp/fv/usr/bin:$PATH LD_LIBRARY_PATH=/tmp/fv/usr/lib/x86_64-linux-gnu; \
  PYTHONUNBUFFERED=1 python3 benchmarks/gpu.py --time-limit 450 --json $OUT/gpu.json 2>&1 | tee $OUT/gpu.log
CMD
