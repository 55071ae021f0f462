# Helpers for nested scenarios (sourced by L1's /init).
#
# run_l2 NAME ARGS...    runs minivmm ARGS with the boot timeline on, between
#                        "=== BEGIN NAME" and "=== END NAME rc=N" markers.
#                        An L2 that triple-faults is run once more after an
#                        "=== RETRY NAME" line: L1's SVM is emulated by qemu TCG,
#                        and a 2-vCPU L2 was once seen to triple-fault during
#                        boot there (1 run in ~30); the test allows one retry per
#                        L1 boot and prints it.
# run_l2_shell NAME INPUT ARGS...
#                        as run_l2, but waits for the guest's "shell ready" line,
#                        then types each line of INPUT into its console.
run_l2() {
    name=$1; shift
    for attempt in 1 2; do
        echo "=== BEGIN $name"
        timeout "${MINIVMM_L2_TIMEOUT:-180}" minivmm --boot-timeline "$@" < /dev/null > /tmp/l2.out 2>&1
        rc=$?
        cat /tmp/l2.out
        echo "=== END $name rc=$rc"
        if [ "$rc" != 0 ] && [ "$attempt" = 1 ] && grep -q "guest triple fault" /tmp/l2.out; then
            echo "=== RETRY $name"
            continue
        fi
        break
    done
}

run_l2_shell() {
    name=$1; input=$2; shift 2
    echo "=== BEGIN $name"
    rm -f /tmp/in /tmp/console
    mkfifo /tmp/in
    timeout "${MINIVMM_L2_TIMEOUT:-180}" minivmm --boot-timeline --console-log /tmp/console "$@" < /tmp/in > /tmp/minivmm.err 2>&1 &
    pid=$!
    exec 3> /tmp/in
    i=0
    while ! grep -q "shell ready" /tmp/console 2>/dev/null && [ $i -lt 600 ]; do
        sleep 0.1; i=$((i + 1))
    done
    sleep 0.5
    printf '%s\n' "$input" >&3
    wait $pid
    rc=$?
    exec 3>&-
    cat /tmp/console /tmp/minivmm.err
    echo "=== END $name rc=$rc"
}
