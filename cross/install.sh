#!/bin/sh
# Installs the wasmfleet agent on a Raspberry Pi (Raspberry Pi OS / Debian, arm64 or armhf) and
# joins it to a server.
#
#   sudo sh install.sh SERVER_URL TOKEN [NODE_NAME]
#
#   SERVER_URL  the server's MQTT broker: mqtts://HOST[:PORT] (a bare HOST or HOST:PORT is
#               taken as mqtts://; port 8883 when omitted). mqtt:// (plain TCP) only for an
#               external broker on a trusted network.
#   TOKEN       the node join token (`<server data dir>/node-token`); `-` reads it from stdin so
#               it stays out of the shell history and the process list
#   NODE_NAME   the node name (lowercase DNS-1123); default: this machine's host name
#
# It installs wasmfleet-agent_*_<arch>.deb found in $WASMFLEET_DEB, beside this script, in
# ./dist/ beside it, or in the current directory; copies the cluster CA certificate (the
# server's `<data dir>/tls/ca.crt`: $WASMFLEET_CA_FILE, or ca.crt beside this script or in the
# current directory) to /etc/wasmfleet/ca.crt; writes /etc/wasmfleet/agent.toml (labels from
# $WASMFLEET_LABELS, e.g. "zone=garage,sensor=bme280"); then enables and (re)starts the unit and
# waits until the agent is running. Run it again to change the server, token or name.
set -eu

log() { printf 'install.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    echo "usage: sudo sh install.sh SERVER_URL TOKEN [NODE_NAME]" >&2
    exit 2
}

normalise_server() {
    case $1 in
    mqtts://* | mqtt://*) echo "$1" ;;
    *://*) die "SERVER_URL must be mqtts://HOST[:PORT] (the server's MQTT listener, not its HTTPS API): $1" ;;
    *) echo "mqtts://$1" ;;
    esac
}

find_ca() {
    if [ -n "${WASMFLEET_CA_FILE:-}" ]; then
        [ -f "$WASMFLEET_CA_FILE" ] || die "WASMFLEET_CA_FILE=$WASMFLEET_CA_FILE does not exist"
        echo "$WASMFLEET_CA_FILE"
        return
    fi
    here=$(cd "$(dirname "$0")" && pwd)
    for dir in "$here" "$(pwd)"; do
        if [ -f "$dir/ca.crt" ]; then
            echo "$dir/ca.crt"
            return
        fi
    done
    die "no ca.crt beside this script or in $(pwd): copy the server's <data dir>/tls/ca.crt
    (e.g. scp SERVER:/var/lib/wasmfleet/server/tls/ca.crt .) or set WASMFLEET_CA_FILE"
}

install_ca() {
    grep -q 'BEGIN CERTIFICATE' "$1" || die "$1 is not a PEM certificate"
    install -m 0644 -o root -g root "$1" /etc/wasmfleet/ca.crt
    log "installed the cluster CA as /etc/wasmfleet/ca.crt"
}

# Values go into TOML strings unescaped: refuse what would break them.
check_value() {
    case $2 in
    *'
'* | *'"'* | *"'"* | *'\'* | *' '*) die "$1 must not contain spaces, quotes, backslashes or newlines" ;;
    esac
}

check_node_name() {
    if [ ${#1} -gt 253 ] ||
        ! printf '%s' "$1" | grep -Eqx '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*'; then
        die "node name '$1' must be lowercase letters, digits, '-' and '.' (DNS-1123)"
    fi
}

find_deb() {
    arch=$1
    if [ -n "${WASMFLEET_DEB:-}" ]; then
        [ -f "$WASMFLEET_DEB" ] || die "WASMFLEET_DEB=$WASMFLEET_DEB does not exist"
        echo "$WASMFLEET_DEB"
        return
    fi
    here=$(cd "$(dirname "$0")" && pwd)
    for dir in "$here" "$here/dist" "$(pwd)"; do
        # The newest version first (ls -v sorts version numbers).
        found=$(ls -v "$dir"/wasmfleet-agent_*_"$arch".deb 2>/dev/null | tail -n1 || true)
        if [ -n "$found" ]; then
            echo "$found"
            return
        fi
    done
    die "no wasmfleet-agent_*_$arch.deb beside this script, in ./dist or in $(pwd); build it with
    cross/package $([ "$arch" = arm64 ] && echo aarch64 || echo armv7) and copy it here, or set WASMFLEET_DEB"
}

install_deb() {
    log "installing $1"
    case $1 in
    /*) deb=$1 ;;
    *) deb=./$1 ;;
    esac
    # apt-get resolves the package's Depends; plain dpkg is the fallback without apt.
    if command -v apt-get >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$deb" >/dev/null
    else
        dpkg -i "$deb"
    fi
}

# "k=v,k2=v2" as TOML lines `"k" = "v"` (the agent validates keys and values).
toml_labels() {
    printf '%s\n' "$1" | tr ',' '\n' | while IFS='=' read -r key value; do
        [ -n "$key" ] || continue
        printf '"%s" = "%s"\n' "$key" "$value"
    done
}

write_config() {
    tmp=$(mktemp /etc/wasmfleet/.agent.toml.XXXXXX)
    chown root:wasmfleet "$tmp"
    chmod 0640 "$tmp"
    cat >"$tmp" <<EOF
# wasmfleet agent settings, written by install.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ).
# After editing: systemctl restart wasmfleet-agent
server = "$1"
ca_file = "$5"
token = "$2"
node_name = "$3"
data_dir = "/var/lib/wasmfleet/agent"

[labels]
$(toml_labels "$4")
EOF
    mv "$tmp" /etc/wasmfleet/agent.toml
    log "wrote /etc/wasmfleet/agent.toml (server $1, node $3)"
}

start_unit() {
    systemctl daemon-reload
    systemctl enable wasmfleet-agent.service >/dev/null 2>&1
    systemctl restart wasmfleet-agent.service
    # The agent exits at once on a bad setting; Restart=always would hide that, so watch it.
    sleep 3
    if systemctl is-active --quiet wasmfleet-agent.service &&
        [ "$(systemctl show -p NRestarts --value wasmfleet-agent.service)" = 0 ]; then
        log "wasmfleet-agent is running; on the server: wasmfleet get nodes"
    else
        journalctl -u wasmfleet-agent.service -n 20 --no-pager >&2 || true
        die "wasmfleet-agent does not stay up; see the log above"
    fi
}

main() {
    if [ $# -lt 2 ] || [ $# -gt 3 ]; then
        usage
    fi
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "run as root"
        exec sudo WASMFLEET_DEB="${WASMFLEET_DEB:-}" WASMFLEET_LABELS="${WASMFLEET_LABELS:-}" \
            WASMFLEET_CA_FILE="${WASMFLEET_CA_FILE:-}" sh "$0" "$@"
    fi
    server=$(normalise_server "$1")
    token=$2
    if [ "$token" = - ]; then
        IFS= read -r token || [ -n "$token" ] || die "no token on stdin"
    fi
    [ -n "$token" ] || die "the token is empty"
    node=${3:-$(hostname | tr '[:upper:]' '[:lower:]')}
    labels=${WASMFLEET_LABELS:-}
    check_value SERVER_URL "$server"
    check_value TOKEN "$token"
    check_value WASMFLEET_LABELS "$labels"
    check_node_name "$node"

    arch=$(dpkg --print-architecture)
    case $arch in
    arm64 | armhf) ;;
    *) log "warning: this machine is $arch; the packages are built for arm64 and armhf" ;;
    esac
    ca_file=
    case $server in
    mqtts://*) ca_source=$(find_ca) ;;
    *) log "warning: $server is plain TCP: the token crosses the network in clear text" ;;
    esac
    deb_file=$(find_deb "$arch")
    install_deb "$deb_file"
    if [ -n "${ca_source:-}" ]; then
        install_ca "$ca_source"
        ca_file=/etc/wasmfleet/ca.crt
    fi
    write_config "$server" "$token" "$node" "$labels" "$ca_file"
    start_unit
}

main "$@"
