#!/usr/bin/env bash
# Provide a Docker engine and the CI sandbox image, for the tests marked `docker`.
#
# CI machines reach no image registry, only Debian's package mirror. So the engine comes from apt,
# the base image is a debootstrap'd Debian (minbase) imported into the engine, and the sandbox image
# is Dockerfile.sandbox built on that base with nothing installed: the tests mount the host's Python
# and virtual environment read-only instead (DockerSandbox(mount_host_python=True)).
#
# Idempotent: a running engine and the base image are reused, and the sandbox image is rebuilt
# only when its inputs changed (a hash of Dockerfile.sandbox, the build arguments and the build
# context, kept as a label). Nothing is rebuilt from scratch when its inputs have not changed: the
# debootstrap'd root file system is kept as a tarball in the cache directory, keyed by a hash of
# what made it (suite, mirror, variant, debootstrap's version, this script's recipe), so a fresh
# engine on the same machine imports it (seconds) instead of running debootstrap (about a minute).
# Exits non-zero with a message when it cannot provide the engine and the image. Needs root
# (apt-get, dockerd, debootstrap) unless all exist.
#
# Environment (all optional):
#   ARCHSMITH_SANDBOX_IMAGE   image to build (default archsmith-sandbox:ci)
#   ARCHSMITH_BASE_IMAGE      debootstrap base image (default archsmith-base:bookworm)
#   ARCHSMITH_CI_CACHE        where the base tarball is kept (default ~/.cache/archsmith-ci)
#   ARCHSMITH_DOCKER_STORAGE  dockerd's storage driver (default: overlay2 where the kernel mounts
#                             overlayfs here, else vfs)
#   DOCKERD_LOG               dockerd's log file (default /tmp/archsmith-dockerd.log)
set -euo pipefail
cd "$(dirname "$0")/.."

SANDBOX_IMAGE="${ARCHSMITH_SANDBOX_IMAGE:-archsmith-sandbox:ci}"
BASE_IMAGE="${ARCHSMITH_BASE_IMAGE:-archsmith-base:bookworm}"
SUITE="bookworm"
DOCKERD_LOG="${DOCKERD_LOG:-/tmp/archsmith-dockerd.log}"
SOCKET="/var/run/docker.sock"
CACHE_DIR="${ARCHSMITH_CI_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/archsmith-ci}"

die() {
    echo "docker-setup: ERROR: $*" >&2
    exit 1
}

# Run a step and print how long it took.
step() {
    local name="$1"
    shift
    local start_ms end_ms
    start_ms=$(date +%s%3N)
    echo "== docker-setup: ${name}"
    "$@"
    end_ms=$(date +%s%3N)
    printf '== docker-setup: %s took %d.%03d s\n' "${name}" \
        $(((end_ms - start_ms) / 1000)) $(((end_ms - start_ms) % 1000))
}

engine_up() {
    docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

install_packages() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "docker.io and debootstrap are installed"
        return
    fi
    [ "$(id -u)" -eq 0 ] || die "need root to apt-get install ${missing[*]}"
    command -v apt-get >/dev/null 2>&1 || die "no apt-get: install ${missing[*]} by hand"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed"
}

# overlay2 creates a container in milliseconds; vfs copies the image's whole file system per
# container (seconds) but works everywhere, including on an overlay root (nested containers).
storage_driver() {
    if [ -n "${ARCHSMITH_DOCKER_STORAGE:-}" ]; then
        echo "${ARCHSMITH_DOCKER_STORAGE}"
        return
    fi
    mkdir -p /var/lib/docker
    local probe
    probe=$(mktemp -d /var/lib/docker/overlay-probe.XXXXXX)
    mkdir "${probe}/lower" "${probe}/upper" "${probe}/work" "${probe}/merged"
    if mount -t overlay overlay \
        -o "lowerdir=${probe}/lower,upperdir=${probe}/upper,workdir=${probe}/work" \
        "${probe}/merged" 2>/dev/null; then
        umount "${probe}/merged"
        echo overlay2
    else
        echo vfs
    fi
    rm -rf "${probe}"
}

start_engine() {
    if engine_up; then
        echo "a Docker engine is already running: $(docker version --format '{{.Server.Version}}')," \
            "storage $(docker info --format '{{.Driver}}')"
        return
    fi
    if [ -S "${SOCKET}" ] && pgrep -x dockerd >/dev/null 2>&1; then
        echo "dockerd is starting; waiting for it"
    else
        [ "$(id -u)" -eq 0 ] || die "no Docker engine is running and only root can start dockerd"
        command -v dockerd >/dev/null 2>&1 || die "dockerd is not installed"
        # --iptables=false: the sandbox uses --network none and CI machines may lack netfilter.
        local driver
        driver=$(storage_driver)
        echo "starting dockerd with the ${driver} storage driver (log: ${DOCKERD_LOG})"
        nohup dockerd --iptables=false --storage-driver="${driver}" >"${DOCKERD_LOG}" 2>&1 &
    fi
    local i
    for i in $(seq 1 60); do
        if engine_up; then
            echo "dockerd is up after ${i} s: $(docker version --format '{{.Server.Version}}')," \
                "storage $(docker info --format '{{.Driver}}')"
            return
        fi
        sleep 1
    done
    tail -n 30 "${DOCKERD_LOG}" >&2 2>/dev/null || true
    die "dockerd did not answer on ${SOCKET} within 60 s (log: ${DOCKERD_LOG})"
}

# The first Debian mirror named in the apt sources (deb822 or one-line format).
debian_mirror() {
    local mirror=""
    if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
        mirror=$(awk '
            /^URIs:/ { uri = $2 }
            /^Suites:/ { if (uri != "" && $0 ~ /[ \t]'"${SUITE}"'([ \t]|$)/) { print uri; exit } }
            /^$/ { uri = "" }
        ' /etc/apt/sources.list.d/*.sources)
    fi
    if [ -z "${mirror}" ] && [ -f /etc/apt/sources.list ]; then
        mirror=$(awk '$1 == "deb" && $3 == "'"${SUITE}"'" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
            /etc/apt/sources.list)
    fi
    [ -n "${mirror}" ] || die "no ${SUITE} mirror found in /etc/apt/sources.list{,.d/*.sources}"
    echo "${mirror}"
}

# The debootstrap directory, removed on exit even when a step fails.
ROOTFS=""
cleanup_rootfs() {
    if [ -n "${ROOTFS}" ] && [ -d "${ROOTFS}" ]; then
        # debootstrap mounts proc and sys inside while it runs; never delete through a mount.
        umount -R "${ROOTFS}/proc" "${ROOTFS}/sys" 2>/dev/null || true
        rm -rf --one-file-system "${ROOTFS}"
    fi
}
trap cleanup_rootfs EXIT

# The root file system's recipe: what build_base runs after debootstrap. Part of the cache key, so
# a change here makes a new tarball.
trim_rootfs() {
    # mktemp made the directory 0700 and tar records it as the image's "/": a non-root user could
    # then reach nothing.
    chmod 0755 "$1"
    # Package caches, lists and docs are dead weight in the image.
    rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/* \
        "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/locale/*
}

base_key() {
    {
        echo "${SUITE} minbase $1"
        dpkg-query -W -f='${Version}' debootstrap 2>/dev/null || echo "debootstrap ?"
        declare -f trim_rootfs
    } | sha256sum | cut -c1-16
}

build_base() {
    if docker image inspect "${BASE_IMAGE}" >/dev/null 2>&1; then
        echo "base image ${BASE_IMAGE} exists"
        return
    fi
    [ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
    local mirror log t0 t1 t2 tarball
    mirror=$(debian_mirror)
    tarball="${CACHE_DIR}/base-${SUITE}-$(base_key "${mirror}").tar"
    if [ -f "${tarball}" ]; then
        t0=$(date +%s%3N)
        if docker import - "${BASE_IMAGE}" <"${tarball}" >/dev/null; then
            t1=$(date +%s%3N)
            printf 'imported %s from the cached %s in %d.%03d s\n' "${BASE_IMAGE}" "${tarball}" \
                $(((t1 - t0) / 1000)) $(((t1 - t0) % 1000))
            return
        fi
        echo "docker-setup: warning: the cached ${tarball} did not import; building it again" >&2
        rm -f "${tarball}"
    fi
    log=/tmp/archsmith-debootstrap.log
    ROOTFS=$(mktemp -d /tmp/archsmith-rootfs.XXXXXX)
    echo "debootstrap --variant=minbase ${SUITE} from ${mirror} (log: ${log})"
    t0=$(date +%s%3N)
    debootstrap --variant=minbase "${SUITE}" "${ROOTFS}" "${mirror}" >"${log}" 2>&1 \
        || { tail -n 30 "${log}" >&2; die "debootstrap failed (log: ${log})"; }
    t1=$(date +%s%3N)
    trim_rootfs "${ROOTFS}"
    mkdir -p "${CACHE_DIR}"
    # Written under a temporary name and renamed: a run killed midway leaves no half tarball.
    tar -C "${ROOTFS}" -cf "${tarball}.tmp.$$" . || die "cannot write ${tarball}"
    mv -f "${tarball}.tmp.$$" "${tarball}"
    docker import - "${BASE_IMAGE}" <"${tarball}" >/dev/null \
        || die "docker import of the debootstrap rootfs failed"
    t2=$(date +%s%3N)
    printf 'debootstrap %d.%03d s, import %d.%03d s; kept as %s\n' $(((t1 - t0) / 1000)) \
        $(((t1 - t0) % 1000)) $(((t2 - t1) / 1000)) $(((t2 - t1) % 1000)) "${tarball}"
    cleanup_rootfs
    ROOTFS=""
    echo "imported ${BASE_IMAGE}"
}

# A hash of everything the sandbox image is built from: the Dockerfile, the build arguments, the
# base image's id and the files .dockerignore lets into the context.
sandbox_inputs() {
    {
        sha256sum Dockerfile.sandbox .dockerignore
        echo "BASE_IMAGE=${BASE_IMAGE} INSTALL_ARCHSMITH=0"
        docker image inspect --format '{{.Id}}' "${BASE_IMAGE}"
        find pyproject.toml README.md archsmith -type f ! -name '*.pyc' \
            ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    } | sha256sum | cut -c1-16
}

build_sandbox() {
    local inputs built
    inputs=$(sandbox_inputs)
    built=$(docker image inspect --format '{{index .Config.Labels "archsmith.inputs"}}' \
        "${SANDBOX_IMAGE}" 2>/dev/null || true)
    if [ "${built}" = "${inputs}" ]; then
        echo "${SANDBOX_IMAGE} is up to date (inputs ${inputs})"
        return
    fi
    # The legacy builder needs no BuildKit daemon or buildx plugin, neither of which CI has.
    DOCKER_BUILDKIT=0 docker build --quiet -f Dockerfile.sandbox \
        --build-arg "BASE_IMAGE=${BASE_IMAGE}" --build-arg INSTALL_ARCHSMITH=0 \
        --label "archsmith.inputs=${inputs}" \
        -t "${SANDBOX_IMAGE}" . || die "docker build of ${SANDBOX_IMAGE} failed"
    # Earlier builds of the tag, now untagged (Dockerfile.sandbox labels them).
    docker image prune -f --filter label=archsmith.image=sandbox >/dev/null \
        || echo "docker-setup: warning: could not prune old sandbox images" >&2
    echo "built ${SANDBOX_IMAGE} (inputs ${inputs})"
}

step "install docker.io and debootstrap" install_packages
command -v docker >/dev/null 2>&1 || die "no docker command after the install"
step "start the engine" start_engine
step "base image ${BASE_IMAGE}" build_base
step "sandbox image ${SANDBOX_IMAGE}" build_sandbox
docker image inspect "${SANDBOX_IMAGE}" >/dev/null 2>&1 || die "image ${SANDBOX_IMAGE} is missing"
echo "== docker-setup: ready: engine $(docker version --format '{{.Server.Version}}'), image ${SANDBOX_IMAGE}"
