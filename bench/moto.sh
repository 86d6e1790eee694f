# Sourced by the S3 benchmarks (bench/s3_ingest.sh, bench/follow_scale.sh).
# start_moto PYTHON LOG: starts moto's S3 server (a venv with moto[server]) on a free
# loopback port, logging to LOG; sets `port` and `moto` (its pid: the caller's EXIT trap
# kills it), exports the AWS_* variables mfh reads, and returns once the server answers.
start_moto() {
  port=$("$1" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$1" -m moto.server -H 127.0.0.1 -p "$port" >"$2" 2>&1 &
  moto=$!
  # Until moto answers (it takes a second or two to start).
  "$1" - "$port" <<'PY'
import sys, time, urllib.request
for _ in range(300):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=2)
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("error: moto's S3 server did not answer")
PY
  export AWS_ENDPOINT="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
}
