# Scenario of `cargo bench --bench boot -- --nested` (runs inside L1; see
# tests/nested/l1-lib.sh for run_l2).

# Three 2-vCPU boots to user space.
for i in 1 2 3; do
    run_l2 elf-2cpu-$i --kernel /l2/vmlinux --initrd /l2/initramfs.cpio --mem 512M --cpus 2
done

# Side by side in the same L1, alternating: minivmm booting the L2 Linux to user space;
# Firecracker with the same vmlinux, initramfs, full command line, 2 vCPUs and 256 MiB,
# when the harness packed it (MINIVMM_NESTED_FIRECRACKER=PATH); runc starting a busybox
# container, when packed (MINIVMM_NESTED_RUNC=1): all under the same emulation. L1
# times launch to the ready line (the guest's "user space reached", the container's
# CONTAINER-READY) and launch to exit on its own clock, the same way for each.
side_run() {
    name=$1; marker=$2; shift 2
    echo "=== BEGIN $name"
    t0=$(cut -d' ' -f1 /proc/uptime)
    { "$@" < /dev/null 2>&1; echo $? > /tmp/side.rc; } | awk -v t0="$t0" -v m="$marker" '{ print }
        index($0, m) && !seen { seen = 1; getline u < "/proc/uptime"; close("/proc/uptime")
            split(u, f, " "); printf "L1: launch to ready s=%.2f\n", f[1] - t0 }'
    echo "L1: launch to exit s=$(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { print b - a }')"
    echo "=== END $name rc=$(cat /tmp/side.rc)"
}
args="console=ttyS0 reboot=k panic=1 pci=off nomodules i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd noxsave"
if [ -x /bin/firecracker ]; then
    printf '%s\n' "{\"boot-source\": {\"kernel_image_path\": \"/l2/vmlinux\", \"initrd_path\": \"/l2/initramfs.cpio\", \"boot_args\": \"$args\"}," \
        '"machine-config": {"vcpu_count": 2, "mem_size_mib": 256}, "drives": [], "network-interfaces": []}' > /tmp/fc.json
fi
if [ -x /bin/runc ]; then
    mkdir -p /sys/fs/cgroup /run/runc
    mount -t cgroup2 none /sys/fs/cgroup
fi
for i in 1 2 3; do
    side_run side-minivmm-$i "MINIVMM-GUEST: user space reached" minivmm --boot-timeline \
        --no-default-cmdline --cmdline "$args" --kernel /l2/vmlinux --initrd /l2/initramfs.cpio \
        --mem 256M --cpus 2
    if [ -x /bin/firecracker ]; then
        side_run side-firecracker-$i "MINIVMM-GUEST: user space reached" timeout 300 \
            firecracker --no-api --config-file /tmp/fc.json --level Warning
    fi
    if [ -x /bin/runc ]; then
        # --no-pivot: L1's root is its initramfs, where pivot_root cannot work.
        side_run side-runc-$i CONTAINER-READY runc --root /run/runc run --no-pivot --bundle /oci c$i
    fi
done

# virtio-blk throughput from guest user space: dd with O_DIRECT on a 64 MiB disk.
truncate -s 64M /tmp/bench.img
run_l2 disk-bench --kernel /l2/vmlinux --initrd /l2/initramfs.cpio --mem 256M \
    --disk path=/tmp/bench.img --cmdline minivmm.action=disk-bench

# The same guest and dd under QEMU's virtio-blk (microvm, KVM) in the same L1, when
# the harness packed QEMU (MINIVMM_NESTED_QEMU=1).
if [ -x /bin/qemu-system-x86_64 ]; then
    truncate -s 64M /tmp/qbench.img
    echo "=== BEGIN qemu-disk-bench"
    timeout 300 qemu-system-x86_64 -L /usr/share/qemu -M microvm -enable-kvm -cpu host -m 256 -smp 1 \
        -nodefaults -no-user-config -display none -serial stdio -no-reboot \
        -kernel /l2/vmlinux -initrd /l2/initramfs.cpio \
        -append "console=ttyS0 reboot=k panic=1 minivmm.action=disk-bench" \
        -drive id=d,file=/tmp/qbench.img,format=raw,if=none -device virtio-blk-device,drive=d \
        < /dev/null 2>&1
    echo "=== END qemu-disk-bench rc=$?"
fi

# virtio-net throughput from guest user space: wget of a 32 MiB file from L1's httpd
# and an 8 MiB upload with nc, over a tap minivmm creates; twice.
for i in 1 2; do
    run_l2_net net-bench-$i mvm0 --kernel /l2/vmlinux --initrd /l2/initramfs.cpio --mem 256M \
        --net tap=mvm0,create=on --cmdline minivmm.action=net
done

# The same guest and transfers under QEMU's virtio-net (microvm, KVM, tap backend).
if [ -x /bin/qemu-system-x86_64 ]; then
    for i in 1 2; do
        run_net qemu-net-bench-$i qtap0 qemu-system-x86_64 -L /usr/share/qemu -M microvm \
            -enable-kvm -cpu host -m 256 -smp 1 -nodefaults -no-user-config -display none \
            -serial stdio -no-reboot -kernel /l2/vmlinux -initrd /l2/initramfs.cpio \
            -append "console=ttyS0 reboot=k panic=1 minivmm.action=net" \
            -netdev tap,id=n,ifname=qtap0,script=no,downscript=no \
            -device virtio-net-device,netdev=n
    done
fi

# The same disk and network transfers under Firecracker in the same L1, when packed.
if [ -x /bin/firecracker ]; then
    fc_config() {  # fc_config FILE ACTION DRIVES NETS
        printf '%s\n' "{\"boot-source\": {\"kernel_image_path\": \"/l2/vmlinux\", \"initrd_path\": \"/l2/initramfs.cpio\", \"boot_args\": \"$args minivmm.action=$2 minivmm.end=reboot\"}," \
            "\"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 256}, \"drives\": [$3], \"network-interfaces\": [$4]}" > "$1"
    }
    truncate -s 64M /tmp/fbench.img
    fc_config /tmp/fcd.json disk-bench '{"drive_id": "vda", "path_on_host": "/tmp/fbench.img", "is_root_device": false, "is_read_only": false}' ''
    echo "=== BEGIN firecracker-disk-bench"
    timeout 300 firecracker --no-api --config-file /tmp/fcd.json --level Warning < /dev/null 2>&1
    echo "=== END firecracker-disk-bench rc=$?"
    fc_config /tmp/fcn.json net '' '{"iface_id": "eth0", "host_dev_name": "ftap0", "guest_mac": "02:00:00:00:00:01"}'
    for i in 1 2; do
        ip tuntap add dev ftap0 mode tap
        run_net firecracker-net-bench-$i ftap0 timeout 300 firecracker --no-api --config-file /tmp/fcn.json --level Warning
        ip link del ftap0 2>/dev/null
    done
fi
