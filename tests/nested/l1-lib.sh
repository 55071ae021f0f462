# Helpers for nested scenarios (sourced by L1's /init).
#
# run_l2 NAME ARGS...    runs minivmm ARGS with the boot timeline on, between
#                        "=== BEGIN NAME" and "=== END NAME rc=N" markers.
#                        An L2 that triple-faults, or hangs until the watchdog
#                        stops it, is run once more after an "=== RETRY NAME"
#                        line: L1's SVM is emulated by qemu TCG, where a 2-vCPU L2
#                        was seen to triple-fault during boot (1 run in ~30) and
#                        the stock kernel to hang with one vCPU answering neither
#                        IPIs nor NMIs (its other vCPU's soft-lockup report says
#                        so); the test allows one retry per L1 boot and prints it.
# run_l2_shell NAME INPUT ARGS...
#                        as run_l2, but waits for the guest's shell prompt (after
#                        its "shell ready" line), then types each line of INPUT
#                        into its console.
# bounded_start OUT CMD...  starts CMD (stdin /dev/null, output to OUT) in the
#                        background, with a watchdog: after MINIVMM_L2_TIMEOUT
#                        seconds (default 180) SIGTERM, and if CMD still runs 15 s
#                        later, its threads' states into OUT and SIGKILL.
# bounded_wait           waits for it; returns its status.
bounded_start() {
    bounded_out=$1; shift
    "$@" < /dev/null > "$bounded_out" 2>&1 &
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
    for attempt in 1 2; do
        echo "=== BEGIN $name"
        bounded_start /tmp/l2.out minivmm --boot-timeline "$@"
        bounded_wait
        rc=$?
        cat /tmp/l2.out
        echo "=== END $name rc=$rc"
        if [ "$rc" != 0 ] && [ "$attempt" = 1 ] && grep -q "guest triple fault" /tmp/l2.out; then
            echo "=== RETRY $name: the L2 triple-faulted (rc=$rc); running it once more"
            continue
        fi
        if [ "$rc" != 0 ] && [ "$attempt" = 1 ] && grep -q "L1: timed out after" /tmp/l2.out; then
            echo "=== RETRY $name: the L2 hung until the watchdog stopped it (rc=$rc); running it once more"
            continue
        fi
        break
    done
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
    cat /tmp/console /tmp/minivmm.err
    echo "=== END $1 rc=$rc"
}

run_l2_shell() {
    name=$1; input=$2; shift 2
    echo "=== BEGIN $name"
    console_start "$@"
    # Type once the guest's shell shows its prompt ("/ # ", after the "shell ready"
    # line): it is then reading the console. Input typed earlier would not be lost
    # either (the guest's tty buffers it), but its echo would land before the prompt.
    i=0
    while ! sed -n '/shell ready/,$p' /tmp/console 2>/dev/null | grep -q '# ' && [ $i -lt 600 ]; do
        sleep 0.1; i=$((i + 1))
    done
    [ $i -lt 600 ] || echo "L1: no shell prompt from $name after 60 s; typing anyway"
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
# the tap is gone.
sigterm_at() {
    name=$1; marker=$2; tap=$3; shift 3
    echo "=== BEGIN $name"
    bounded_start /tmp/l2.out minivmm --net "tap=$tap,create=on" "$@"
    n=0
    while ! grep -q "$marker" /tmp/l2.out && [ $n -lt 1200 ] && kill -0 "$bounded_pid" 2>/dev/null; do
        sleep 0.1; n=$((n + 1))
    done
    grep -q "$marker" /tmp/l2.out && echo "L1: saw '$marker'; SIGTERM"
    kill -TERM "$bounded_pid"
    bounded_wait
    rc=$?
    tail -n 3 /tmp/l2.out
    if ip link show "$tap" >/dev/null 2>&1; then echo "L1: $tap left behind"; else echo "L1: $tap removed"; fi
    echo "=== END $name rc=$rc"
}

# run_l2_stalled NAME TAP ARGS...
#                        runs minivmm ARGS (a guest with --net tap=TAP,create=on
#                        and the stalled-disk action) with its console on a fifo;
#                        once TAP exists, L1 gives it 10.0.2.1/24; when the guest
#                        asks for a console line (while its slow disk is busy), L1
#                        types one.
run_l2_stalled() {
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
