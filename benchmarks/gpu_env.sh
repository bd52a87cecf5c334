# Sourced by the gpu_check*.sh scripts: the output folder ($OUT, the device tool's, or ./gpu-out), the carried
# wheels (.whl/, for packages the GPU image lacks) installed into /tmp/site, and the repository on PYTHONPATH.
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
