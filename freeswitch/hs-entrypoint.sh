#!/bin/sh
# Hold Slayer: container entrypoint for FreeSWITCH.
#
# Checks the environment that vars.xml reads, then runs the given command
# (normally freeswitch ...).  It refuses to start when a secret is missing,
# short, or a stock default (ClueCon, 1234, JambonzR0ck$...), and when any
# value holds a character that would break the XML it is pasted into.
# Values are never printed.
#
# Usage: hs-entrypoint.sh freeswitch -nonat -c -conf /etc/holdslayer/freeswitch ...
set -eu

errors=0
fail() {
    echo "hs-entrypoint: $1" >&2
    errors=$((errors + 1))
}

# value of the variable named $1 ("" when unset)
val() {
    eval "printf '%s' \"\${$1:-}\""
}

# characters allowed in any value pasted into the XML configuration
safe() {
    case "$1" in
        *[!A-Za-z0-9._~+/=:@-]*) return 1 ;;
    esac
    return 0
}

require() {
    if [ -z "$(val "$1")" ]; then
        fail "$1 is required (see .env.example)"
    fi
}

secret() {
    require "$1"
    v=$(val "$1")
    [ -z "$v" ] && return 0
    case "$v" in
        ClueCon|1234|JambonzR0ck\$|change-me|changeme|password|secret|admin)
            fail "$1 is a well-known default; choose a random one (openssl rand -hex 16)" ;;
    esac
    if [ "${#v}" -lt 12 ]; then
        fail "$1 must be at least 12 characters"
    fi
}

secret ESL_PASSWORD
secret DESK_SIP_PASSWORD
secret SERVICE_KEY
require SIP_TRUNK_HOST
require SIP_TRUNK_DID
if [ "${SIP_TRUNK_REGISTER:-true}" != "false" ]; then
    require SIP_TRUNK_USERNAME
    require SIP_TRUNK_PASSWORD
fi

case "${SIP_TRUNK_DID:-}" in
    "") ;;
    *[!0-9]*) fail "SIP_TRUNK_DID must be digits only (E.164 without +), as the carrier sends it" ;;
esac

for name in ESL_PASSWORD DESK_SIP_PASSWORD SERVICE_KEY SIP_TRUNK_HOST SIP_TRUNK_USERNAME \
    SIP_TRUNK_PASSWORD SIP_TRUNK_DID SIP_TRUNK_REGISTER SIP_DOMAIN SIP_LAN_IP SIP_PUBLIC_IP \
    GATEWAY_SIP_PORT TRUNK_SIP_PORT ESL_LISTEN_IP ESL_PORT ESL_ALLOW_CIDR RTP_START_PORT RTP_END_PORT \
    HS_LUA_DIR HS_API_URL HS_TTS_ENGINE HS_TTS_VOICE AUDIO_FORK_PUBLIC_HOST AUDIO_FORK_PORT \
    DESK_ALLOW_INTERNATIONAL; do
    if ! safe "$(val "$name")"; then
        fail "$name holds a character FreeSWITCH's XML cannot take (allowed: A-Z a-z 0-9 . _ ~ + / = : @ -)"
    fi
done

for name in GATEWAY_SIP_PORT TRUNK_SIP_PORT ESL_PORT RTP_START_PORT RTP_END_PORT AUDIO_FORK_PORT; do
    case "$(val "$name")" in
        *[!0-9]*) fail "$name must be a port number" ;;
    esac
done

if [ "$errors" -gt 0 ]; then
    echo "hs-entrypoint: $errors problem(s); FreeSWITCH not started" >&2
    exit 64
fi

if [ "$#" -eq 0 ]; then
    echo "hs-entrypoint: no command given" >&2
    exit 64
fi
exec "$@"
