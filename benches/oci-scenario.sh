# L1 scenario of benches/oci.rs (MINIVMM_NESTED_CONTAINERD=1; OCI_ROUNDS and OCI_DENSITY
# are set above this line): the same busybox image through the same containerd, once
# with minivmm-oci and once with runc. Per round, `ctr run` to the container's first
# output line; then OCI_DENSITY sleeping containers of each, and how much of L1's
# available memory they took, per container.
oci_env
uptime_ms() { awk '{printf "%d", $1 * 1000}' /proc/uptime; }
# flags RUNTIME: ctr's flags for it. runc needs --no-pivot: L1's root is an initramfs,
# where pivot_root cannot work (minivmm-oci's guest moves its root itself).
flags() {
    case $1 in
        minivmm) echo "--snapshotter native --runc-binary $RUNTIME" ;;
        runc) echo "--snapshotter native --no-pivot" ;;
    esac
}
for round in $(seq 1 "$OCI_ROUNDS"); do
    for rt in minivmm runc; do
        t0=$(uptime_ms)
        # shellcheck disable=SC2046
        timeout 240 ctr run --rm $(flags $rt) "$IMAGE" "first-$rt-$round" echo first-line \
            | { read -r line; t1=$(uptime_ms); echo "OCI-BENCH: first-line runtime=$rt ms=$((t1 - t0)) line=$line"; cat > /dev/null; }
    done
done
avail_kib() { awk '/MemAvailable/ {print $2}' /proc/meminfo; }
for rt in minivmm runc; do
    sync; echo 3 > /proc/sys/vm/drop_caches
    before=$(avail_kib)
    # One after the other: two L2 kernels booting at once in this emulated L1
    # triple-fault one of them (tests/nested/oci-scenario.sh).
    for i in $(seq 1 "$OCI_DENSITY"); do
        # shellcheck disable=SC2046
        ctr run -d $(flags $rt) "$IMAGE" "dense-$rt-$i" sleep 600 > /dev/null
        for _ in $(seq 1 600); do
            ctr task ls | grep -q "^dense-$rt-$i .*RUNNING" && break
            sleep 0.2
        done
    done
    sleep 2
    after=$(avail_kib)
    rss=0
    for pid in $(ctr task ls | awk -v p="dense-$rt-" 'index($1, p) == 1 {print $2}'); do
        rss=$((rss + $(awk '/VmRSS/ {print $2}' /proc/$pid/status)))
    done
    echo "OCI-BENCH: memory runtime=$rt containers=$OCI_DENSITY per_container_kib=$(( (before - after) / OCI_DENSITY )) pid_rss_kib=$((rss / OCI_DENSITY))"
    for i in $(seq 1 "$OCI_DENSITY"); do
        ctr task kill -s SIGKILL "dense-$rt-$i"
    done
    for i in $(seq 1 "$OCI_DENSITY"); do
        for _ in $(seq 1 300); do
            [ "$(ctr task ls | awk -v id="dense-$rt-$i" '$1 == id {print $3}')" = STOPPED ] && break
            sleep 0.2
        done
        ctr task rm "dense-$rt-$i" > /dev/null 2>&1
        ctr container rm "dense-$rt-$i"
    done
done
echo "=== END oci-bench rc=0"
