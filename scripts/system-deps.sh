#!/usr/bin/env bash
# Install the Debian packages the tests use (graphviz's `dot`, chromium) when they are
# missing and this machine can install them; otherwise say what is missing and go on
# (the tests that need them then fail loudly under CI=true, or skip locally with a reason).
set -u
need=()
command -v dot >/dev/null 2>&1 || need+=(graphviz)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null \
        || echo "warning: could not install ${need[*]}" >&2
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq >/dev/null && sudo apt-get install -y -qq "${need[@]}" >/dev/null \
        || echo "warning: could not install ${need[*]}" >&2
else
    echo "warning: missing ${need[*]}; install them (Debian: apt-get install ${need[*]})" >&2
fi
exit 0
