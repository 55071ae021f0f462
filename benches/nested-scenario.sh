# Scenario of `cargo bench --bench boot -- --nested` (runs inside L1; see
# tests/nested/l1-lib.sh for run_l2).

# Three 2-vCPU boots to user space.
for i in 1 2 3; do
    run_l2 elf-2cpu-$i --kernel /l2/vmlinux --initrd /l2/initramfs.cpio --mem 512M --cpus 2
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
