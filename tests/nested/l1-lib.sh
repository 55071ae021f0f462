# Helpers for nested scenarios (sourced by L1's /init).
#
# run_l2 NAME ARGS...    runs minivmm ARGS with the boot timeline on, between
#                        "=== BEGIN NAME" and "=== END NAME rc=N" markers.
#                        An L2 that triple-faults, or hangs until the watchdog
#                        stops it, is run again (at most twice) after an
#                        "=== RETRY NAME" line naming the last kernel line: L1's
#                        SVM is emulated by qemu TCG, where a 2-vCPU L2 was seen
#                        to triple-fault during boot (1 run in ~30; a CI run saw
#                        the stock kernel do it twice in a row while bringing up
#                        its second vCPU, which 14 local boots never did) and the
#                        stock kernel to hang with one vCPU answering neither
#                        IPIs nor NMIs (its other vCPU's soft-lockup report says
#                        so); the Rust side prints every retry and allows at most
#                        three per nested run.
# run_program NAME COMMAND...
#                        the same for any program that runs an L2 (an example).
# run_l2_shell NAME INPUT ARGS...
#                        as run_l2 (retries too), but waits for the guest's shell
#                        prompt (after its "shell ready" line), then types each
#                        line of INPUT into its console.
# bounded_start OUT CMD...  starts CMD (stdin /dev/null, output to OUT) in the
#                        background, with a watchdog: after MINIVMM_L2_TIMEOUT
#                        seconds (default 180) SIGTERM, and if CMD still runs 15 s
#                        later, its threads' states into OUT and SIGKILL.
# bounded_wait           waits for it; returns its status.
bounded_start() {
    bounded_out=$1; shift
    # Appending (O_APPEND): the watchdog's line below lands at the end and is not
    # overwritten by what the program writes after it (its exit report).
    : > "$bounded_out"
    "$@" < /dev/null >> "$bounded_out" 2>&1 &
    bounded_pid=$!
    (
        sleep "${MINIVMM_L2_TIMEOUT:-180}"
        kill -TERM "$bounded_pid" 2>/dev/null || exit 0
        echo "L1: timed out after ${MINIVMM_L2_TIMEOUT:-180} s; SIGTERM sent" >> "$bounded_out"
        sleep 15
        kill -0 "$bounded_pid" 2>/dev/null || exit 0
        echo "L1: still running 15 s after SIGTERM; its threads:" >> "$bounded_out"
        for t in /proc/"$bounded_pid"/task/*; do
            echo "L1:   $(cat "$t/comm") state=$(cut -d' ' -f3 "$t/stat") wchan=$(cat "$t/wchan")" >> "$bounded_out"
        done
        kill -KILL "$bounded_pid"
    ) &
    bounded_dog=$!
}

bounded_wait() {
    wait "$bounded_pid"
    bounded_rc=$?
    kill "$bounded_dog" 2>/dev/null
    return $bounded_rc
}

run_l2() {
    name=$1; shift
    run_program "$name" minivmm --boot-timeline "$@"
}

# run_program NAME COMMAND...: as run_l2, for any program that runs an L2 (the
# library's examples): its output between the markers, and the same retries.
run_program() {
    name=$1; shift
    for attempt in 1 2 3; do
        echo "=== BEGIN $name"
        bounded_start /tmp/l2.out "$@"
        bounded_wait
        rc=$?
        cat /tmp/l2.out
        echo "=== END $name rc=$rc"
        l2_retry "$name" "$rc" "$attempt" /tmp/l2.out || break
    done
}

# l2_retry NAME RC ATTEMPT FILE...: after a run of NAME that ended with status RC and
# printed FILE..., true (with an "=== RETRY NAME: reason" line) when the run failed
# with a signature of TCG's emulated SVM and this was not the third attempt: the L2
# triple-faulted, or hung until L1's watchdog stopped it (bounded_start's line, or
# console_end's).
l2_retry() {
    r_name=$1; r_rc=$2; r_attempt=$3; shift 3
    { [ "$r_rc" != 0 ] && [ "$r_attempt" != 3 ]; } || return 1
    if grep -q "guest triple fault" "$@"; then
        r_last=$(cat "$@" | grep '^\[' | tail -n 1)
        echo "=== RETRY $r_name: the L2 triple-faulted (rc=$r_rc) after: $r_last; running it once more"
        return 0
    fi
    if grep -q "L1: timed out after" "$@"; then
        echo "=== RETRY $r_name: the L2 hung until the watchdog stopped it (rc=$r_rc); running it once more"
        return 0
    fi
    return 1
}

# console_start ARGS...: starts minivmm ARGS in the background, its console input the
# fifo /tmp/in (open here as fd 3), its console output in /tmp/console.
console_start() {
    rm -f /tmp/in /tmp/console
    mkfifo /tmp/in
    timeout "${MINIVMM_L2_TIMEOUT:-180}" minivmm --boot-timeline --console-log /tmp/console "$@" < /tmp/in > /tmp/minivmm.err 2>&1 &
    pid=$!
    exec 3> /tmp/in
}

# console_end NAME: waits for it, prints its console and messages, and the END line.
console_end() {
    wait $pid
    rc=$?
    exec 3>&-
    # Nothing else signals it: 143 (or 124) is console_start's timeout.
    case $rc in 124|143) echo "L1: timed out after ${MINIVMM_L2_TIMEOUT:-180} s (SIGTERM from timeout)" >> /tmp/minivmm.err ;; esac
    cat /tmp/console /tmp/minivmm.err
    echo "=== END $1 rc=$rc"
}

run_l2_shell() {
    for attempt in 1 2 3; do
        run_l2_shell_once "$@"
        l2_retry "$1" "$rc" "$attempt" /tmp/console /tmp/minivmm.err || break
    done
}

run_l2_shell_once() {
    name=$1; input=$2; shift 2
    echo "=== BEGIN $name"
    console_start "$@"
    # Type once the guest's shell shows its prompt ("/ # ", after the "shell ready"
    # line): it is then reading the console. Input typed earlier would not be lost
    # either (the guest's tty buffers it), but its echo would land before the prompt.
    i=0
    while ! sed -n '/shell ready/,$p' /tmp/console 2>/dev/null | grep -q '# ' && [ $i -lt 600 ] && kill -0 "$pid" 2>/dev/null; do
        sleep 0.1; i=$((i + 1))
    done
    [ $i -lt 600 ] || echo "L1: no shell prompt from $name after 60 s; typing anyway"
    kill -0 "$pid" 2>/dev/null || echo "L1: $name's minivmm ended before its shell prompt"
    printf '%s\n' "$input" >&3
    console_end "$name"
}

# run_l2_net NAME TAP ARGS...
#                        as run_l2, for a guest with --net tap=TAP,create=on in
#                        ARGS, with L1 serving it on TAP (see run_net).
# run_net NAME TAP COMMAND...
#                        runs COMMAND (a VMM that creates TAP) in the background;
#                        once TAP exists, L1 brings it up, gives it 10.0.2.1/24 and
#                        serves DHCP (udhcpd, lease 10.0.2.15), HTTP (httpd:
#                        small.bin, big.bin of NET_BIG_MIB MiB, big.size) and an
#                        upload port (nc, port 1234); at the end it prints the
#                        checksums of what it served and received.
run_l2_net() {
    name=$1; tap=$2; shift 2
    run_net "$name" "$tap" minivmm --boot-timeline "$@"
}

run_net() {
    for attempt in 1 2 3; do
        run_net_once "$@"
        l2_retry "$1" "$rc" "$attempt" /tmp/l2.out || break
    done
}

run_net_once() {
    name=$1; tap=$2; shift 2
    sha() { sha256sum "$@" | cut -d' ' -f1; }
    mkdir -p /www
    dd if=/dev/urandom of=/www/small.bin bs=1024 count=300 2>/dev/null
    dd if=/dev/urandom of=/www/big.bin bs=1M count="${NET_BIG_MIB:-32}" 2>/dev/null
    stat -c %s /www/big.bin > /www/big.size
    cat > /tmp/udhcpd.conf <<EOF
start 10.0.2.15
end 10.0.2.15
interface $tap
lease_file /tmp/udhcpd.leases
option subnet 255.255.255.0
option router 10.0.2.1
EOF
    : > /tmp/udhcpd.leases
    rm -f /tmp/upload.bin
    echo "=== BEGIN $name"
    bounded_start /tmp/l2.out "$@"
    i=0
    while [ ! -e "/sys/class/net/$tap" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
    ip link set "$tap" up
    ip addr add 10.0.2.1/24 dev "$tap"
    udhcpd -f /tmp/udhcpd.conf > /tmp/udhcpd.log 2>&1 &
    dhcpd=$!
    httpd -f -p 10.0.2.1:80 -h /www &
    httpd=$!
    # nc half-closes the connection when its stdin ends, which makes busybox's nc
    # client quit before it has sent everything: give it a stdin that stays open.
    sleep 100000 | nc -l -p 1234 > /tmp/upload.bin &
    ncd=$!
    echo "L1: serving on $tap"
    bounded_wait
    rc=$?
    kill $dhcpd $httpd $ncd 2>/dev/null
    cat /tmp/l2.out
    echo "L1: small sha256=$(sha /www/small.bin)"
    echo "L1: big sha256=$(sha /www/big.bin) bytes=$(cat /www/big.size)"
    echo "L1: upload sha256=$(sha /tmp/upload.bin)"
    if [ -e "/sys/class/net/$tap" ]; then echo "L1: $tap still exists"; else echo "L1: $tap removed"; fi
    echo "=== END $name rc=$rc"
}

# sigterm_at NAME MARKER TAP ARGS...: starts minivmm (with a created tap TAP), waits
# for MARKER in its output, sends SIGTERM, and reports the exit status and whether
# the tap is gone. An L2 that printed no MARKER within 120 s (a CI run saw one print
# nothing at all, on TCG's emulated SVM) is run once more after an "=== RETRY NAME"
# line with its threads' states.
sigterm_at() {
    name=$1; marker=$2; tap=$3; shift 3
    for attempt in 1 2; do
        echo "=== BEGIN $name"
        bounded_start /tmp/l2.out minivmm --net "tap=$tap,create=on" "$@"
        n=0
        while ! grep -q "$marker" /tmp/l2.out && [ $n -lt 1200 ] && kill -0 "$bounded_pid" 2>/dev/null; do
            sleep 0.1; n=$((n + 1))
        done
        seen=0
        grep -q "$marker" /tmp/l2.out && seen=1 && echo "L1: saw '$marker'; SIGTERM"
        if [ "$seen" = 0 ]; then
            echo "L1: no '$marker' after $((n / 10)) s ($(wc -c < /tmp/l2.out) bytes of output); minivmm's threads:"
            for t in /proc/"$bounded_pid"/task/*; do
                echo "L1:   $(cat "$t/comm") state=$(cut -d' ' -f3 "$t/stat") wchan=$(cat "$t/wchan")"
            done
        fi
        kill -TERM "$bounded_pid"
        bounded_wait
        rc=$?
        tail -n 3 /tmp/l2.out
        if ip link show "$tap" >/dev/null 2>&1; then echo "L1: $tap left behind"; else echo "L1: $tap removed"; fi
        echo "=== END $name rc=$rc"
        if [ "$seen" = 0 ] && [ "$attempt" = 1 ]; then
            echo "=== RETRY $name: the L2 printed no '$marker' within 120 s; running it once more"
            continue
        fi
        break
    done
}

# run_l2_stalled NAME TAP ARGS...
#                        runs minivmm ARGS (a guest with --net tap=TAP,create=on
#                        and the stalled-disk action) with its console on a fifo;
#                        once TAP exists, L1 gives it 10.0.2.1/24; when the guest
#                        asks for a console line (while its slow disk is busy), L1
#                        types one. Retried as run_l2 (run_net too).
run_l2_stalled() {
    for attempt in 1 2 3; do
        run_l2_stalled_once "$@"
        l2_retry "$1" "$rc" "$attempt" /tmp/console /tmp/minivmm.err || break
    done
}

run_l2_stalled_once() {
    name=$1; tap=$2; shift 2
    echo "=== BEGIN $name"
    console_start "$@"
    i=0
    while [ ! -e "/sys/class/net/$tap" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
    ip link set "$tap" up
    ip addr add 10.0.2.1/24 dev "$tap"
    i=0
    while ! grep -q 'stalled: type a line' /tmp/console 2>/dev/null && [ $i -lt 1200 ]; do
        sleep 0.05; i=$((i + 1))
    done
    printf 'typed-while-stalled\n' >&3
    console_end "$name"
}

# run_l2_agent NAME ARGS...
#                        starts minivmm ARGS (a guest whose init runs the agent,
#                        with --vsock socket=/tmp/v.sock) in the background, drives
#                        it from L1 with `minivmm exec` and `minivmm cp` (a second
#                        process, as users do), printing one "AGENT: ..." line per
#                        check, then has the guest power off.
uptime_s() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(uptime_s)" 'BEGIN { printf "%.2f", b - a }'; }
run_l2_agent() {
    name=$1; shift
    s=/tmp/v.sock
    for attempt in 1 2 3; do
        echo "=== BEGIN $name"
        t0=$(uptime_s)
        # Info logs: the vsock device's counters and any connection still open at the
        # end (with its flow-control state) land in the output.
        bounded_start /tmp/l2.out minivmm --boot-timeline --log-level info --vsock "socket=$s" "$@"
        agent_checks > /tmp/agent.lines 2>&1
        bounded_wait
        rc=$?
        cat /tmp/agent.lines /tmp/l2.out
        echo "=== END $name rc=$rc"
        # As run_l2: TCG's emulated SVM rarely triple-faults a guest vCPU. Under
        # vsock traffic it also, now and then, stops delivering the device's
        # interrupt: every check from then on stands still, with the device's TX
        # ring all returned, nothing owed, and its interrupt raised but never
        # acknowledged (Firecracker's L2 dies under the same stream in the same L1).
        # Up to two retries for either, or for an L2 that hung until the watchdog
        # stopped it (one CI run saw the first two, one after the other).
        l2_retry "$name" "$rc" "$attempt" /tmp/l2.out && continue
        if [ "$rc" != 0 ] && [ "$attempt" != 3 ] && vsock_interrupt_unanswered; then
            echo "=== RETRY $name: the L2 stopped taking the vsock device's interrupt (raised, never acknowledged, TX ring all returned; rc=$rc); running it once more"
            continue
        fi
        break
    done
}

# True when the vsock device's end-of-run line in /tmp/l2.out shows its TX ring all
# returned (next_avail = avail_idx = next_used = used_idx) and a used-ring interrupt
# still pending: the guest had everything and was told, and never looked.
vsock_interrupt_unanswered() {
    sed -n 's/.*virtio-vsock queues at the end: .*tx next_avail=\([0-9]*\) avail_idx=Some(\([0-9]*\)) next_used=\([0-9]*\) used_idx=Some(\([0-9]*\)); interrupt status 0x\([0-9a-f]*\).*/\1 \2 \3 \4 \5/p' /tmp/l2.out |
        awk '$1 == $2 && $2 == $3 && $3 == $4 && ($5 == "1" || $5 == "3") { found = 1 } END { exit !found }' &&
        ! grep -q "vsock: open at the end: .* queued=true" /tmp/l2.out
}

agent_checks() {
    x() { minivmm exec --vsock-socket "$s" "$@"; }
    sha() { sha256sum "$@" | cut -d' ' -f1; }
    x --wait 90 -- true
    echo "AGENT: first-exec rc=$? after=$(since "$t0")"
    out=$(x -- uname -a); echo "AGENT: uname rc=$? out=$out"
    x -- sh -c 'exit 7'; echo "AGENT: exit7 rc=$?"
    x -- sh -c 'kill -9 $$'; echo "AGENT: sigkill rc=$?"
    x -- sh -c 'echo to-stderr >&2; echo to-stdout' > /tmp/o 2> /tmp/e
    echo "AGENT: streams out=$(cat /tmp/o) err=$(cat /tmp/e)"
    t=$(uptime_s)
    # Normally 4-10 s; a stream that stands still for 90 s ends the run early (the
    # device's state at the end tells a lost interrupt from a device fault).
    timeout 90 minivmm exec --vsock-socket "$s" -- sh -c 'head -c 16777216 /dev/urandom | tee /tmp/big' > /tmp/big.host
    # busybox's timeout exits with the command's status (minivmm exec's, after the
    # SIGTERM), not 124: the time taken says it.
    if awk -v t="$(since "$t")" 'BEGIN { exit !(t >= 89) }'; then
        echo "AGENT: big16 timed-out size=$(wc -c < /tmp/big.host) after=$(since "$t")"
        kill -TERM "$bounded_pid"
        return
    fi
    echo "AGENT: big16 size=$(wc -c < /tmp/big.host) host=$(sha /tmp/big.host) guest=$(x -- sha256sum /tmp/big | cut -d' ' -f1) took=$(since "$t")"
    head -c 4194304 /dev/urandom > /tmp/in.bin
    t=$(uptime_s)
    guest=$(x -i -- sha256sum < /tmp/in.bin | cut -d' ' -f1)
    echo "AGENT: stdin host=$(sha /tmp/in.bin) guest=$guest took=$(since "$t")"
    pids=
    for i in $(seq 32); do x -- sh -c "echo exec-$i" > /tmp/conc.$i & pids="$pids $!"; done
    fails=0
    for p in $pids; do wait "$p" || fails=$((fails + 1)); done
    echo "AGENT: concurrent distinct=$(cat /tmp/conc.* | sort -u | grep -c exec-) failed=$fails"
    minivmm cp --vsock-socket "$s" /tmp/in.bin guest:/tmp/in.copy; rc1=$?
    minivmm cp --vsock-socket "$s" guest:/tmp/in.copy /tmp/in.back; rc2=$?
    echo "AGENT: cp rc=$rc1,$rc2 host=$(sha /tmp/in.bin) back=$(sha /tmp/in.back) guest=$(x -- sha256sum /tmp/in.copy | cut -d' ' -f1)"
    t=$(uptime_s)
    x --timeout 1 -- sleep 30 2> /tmp/e
    echo "AGENT: timeout rc=$? took=$(since "$t") err=$(cat /tmp/e)"
    timeout -s KILL 2 minivmm exec --vsock-socket "$s" -- cat /dev/zero > /dev/null
    echo "AGENT: reader-gone rc=$? then=$(x -- echo alive)"
    echo "AGENT: hwrng bytes=$(x -- sh -c 'head -c 32 /dev/hwrng | wc -c') current=$(x -- cat /sys/class/misc/hw_random/rng_current)"
    # util-linux's script needs ptys: L1's /init mounts no devpts.
    [ -e /dev/pts/ptmx ] || { mkdir -p /dev/pts && mount -t devpts -o ptmxmode=0666 devpts /dev/pts; }
    script -qec "stty rows 40 cols 100; minivmm exec -t --vsock-socket $s -- sh -c 'tty; stty size'" /dev/null > /tmp/tty.out 2>&1
    echo "AGENT: tty rc=$? $(tr -d '\r' < /tmp/tty.out | tr '\n' ' ')"
    x -- poweroff -f > /dev/null 2>&1
}

# run_l2_agent_once NAME ARGS...: a guest with the agent (ARGS as run_l2_agent's):
# one exec round trip and 32 bytes of /dev/hwrng, then the guest powers off.
run_l2_agent_once() {
    name=$1; shift
    echo "=== BEGIN $name"
    s=/tmp/v.sock
    t0=$(uptime_s)
    bounded_start /tmp/l2.out minivmm --boot-timeline --vsock "socket=$s" "$@"
    out=$(minivmm exec --vsock-socket "$s" --wait 600 -- uname -m)
    echo "AGENT: exec rc=$? out=$out after=$(since "$t0")"
    echo "AGENT: hwrng bytes=$(minivmm exec --vsock-socket "$s" -- sh -c 'head -c 32 /dev/hwrng | wc -c') current=$(minivmm exec --vsock-socket "$s" -- cat /sys/class/misc/hw_random/rng_current)"
    minivmm exec --vsock-socket "$s" -- poweroff -f > /dev/null 2>&1
    bounded_wait
    rc=$?
    cat /tmp/l2.out
    echo "=== END $name rc=$rc"
}

# oci_env                (with MINIVMM_NESTED_CONTAINERD=1) installs minivmm-oci's guest
#                        (the L2 kernel and initramfs), starts containerd on tmpfs
#                        state and imports the busybox image with the native
#                        snapshotter (the initramfs root has no overlayfs upper).
oci_env() {
    mkdir -p /run /dev/pts
    mount -t tmpfs -o mode=755 tmpfs /run
    [ -e /var/run ] || { mkdir -p /var; ln -s /run /var/run; }
    mount -t devpts devpts /dev/pts 2>/dev/null
    mkdir -p /var/lib/containerd /etc/containerd /sys/fs/cgroup /tmp/hostdir
    mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null || echo "OCI: no cgroup2"
    printf 'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n' > /etc/containerd/config.toml
    # noxsave, as every L2 here (tests/nested.rs): TCG's SVM does not intercept
    # XSETBV, and two L2s writing XCR0 behind L1's back were seen to triple-fault or
    # hang the second one's boot.
    minivmm-oci install --kernel /l2/vmlinux --initrd /l2/initramfs.cpio \
        --cmdline 'noxsave minivmm.action=agent' 
    containerd > /tmp/containerd.log 2>&1 &
    for _ in $(seq 1 300); do [ -S /run/containerd/containerd.sock ] && break; sleep 0.2; done
    ctr image import --snapshotter native /oci-image/busybox.tar > /dev/null || echo "OCI: import failed"
    echo "OCI: L1 kernel $(uname -r)"
}
RUNTIME=/bin/minivmm-oci
IMAGE=docker.io/minivmm/busybox:latest
