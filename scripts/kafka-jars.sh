#!/usr/bin/env bash
# Fetches the Apache Kafka tool and broker jars (with their run-time dependencies) from
# Maven Central into a cache directory outside the repository:
#   ${GREGOR_CACHE:-$HOME/.cache/gregor}/kafka-<version>/libs
# The version is $KAFKA_VERSION, by default the current release (4.4.0); the tests also use
# the older 4.1.1 CLI where the versions behave differently. Does nothing when that directory
# is already complete for the current scripts/kafka-pom.xml. Prints the libs directory on
# stdout; progress goes to stderr.
#
#   scripts/kafka-jars.sh                        # fetch 4.4.0 if needed
#   KAFKA_VERSION=4.1.1 scripts/kafka-jars.sh    # the older CLI
#   scripts/kafka-jars.sh --force                # fetch again
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pom="$here/kafka-pom.xml"
cache="${GREGOR_CACHE:-$HOME/.cache/gregor}"
dest="$cache/kafka-$KAFKA_VERSION"
libs="$dest/libs"
stamp="$dest/.libs-complete"

force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "kafka-jars.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { echo "kafka-jars: $*" >&2; }

pom_sum="$(sha256sum "$pom" | cut -d' ' -f1) $KAFKA_VERSION"
if [[ $force -eq 0 && -f "$stamp" && -d "$libs" && "$(cat "$stamp")" == "$pom_sum" ]] \
   && compgen -G "$libs/kafka-tools-$KAFKA_VERSION.jar" >/dev/null \
   && compgen -G "$libs/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null; then
  log "already complete"
  echo "$libs"
  exit 0
fi

command -v mvn >/dev/null || { log "mvn not found (apt-get install maven)"; exit 1; }
command -v java >/dev/null || [[ -n "${JAVA_HOME:-}" ]] || { log "java not found"; exit 1; }

mkdir -p "$dest"
tmp="$(mktemp -d "$dest/libs.tmp.XXXXXX")"
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

log "resolving Apache Kafka $KAFKA_VERSION jars with Maven into $libs"
start=$SECONDS
mvn_log="$tmp/mvn.log"
# Run from the temp dir so Maven leaves nothing (target/) inside the repository.
# shellcheck disable=SC2086  # MVN_ARGS holds several words on purpose
if ! (cd "$tmp" && mvn -B -q ${MVN_ARGS:-} -f "$pom" \
        -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DoutputDirectory="$tmp/jars") >"$mvn_log" 2>&1; then
  cat "$mvn_log" >&2
  log "maven failed"
  exit 1
fi

for need in "kafka-tools-$KAFKA_VERSION.jar" "kafka_2.13-$KAFKA_VERSION.jar" \
            "kafka-clients-$KAFKA_VERSION.jar" "kafka-server-$KAFKA_VERSION.jar" \
            "kafka-storage-$KAFKA_VERSION.jar" "kafka-metadata-$KAFKA_VERSION.jar" \
            "kafka-raft-$KAFKA_VERSION.jar"; do
  [[ -f "$tmp/jars/$need" ]] || { log "missing $need after maven run"; exit 1; }
done
compgen -G "$tmp/jars/log4j-core-*.jar" >/dev/null || { log "missing log4j-core"; exit 1; }

rm -rf "$libs" "$stamp"
mv "$tmp/jars" "$libs"
echo "$pom_sum" >"$stamp"
log "$(find "$libs" -name "*.jar" | wc -l) jars in $((SECONDS - start))s"
echo "$libs"
