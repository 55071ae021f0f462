# Scenario of `cargo bench --bench fs` (runs inside L1; see tests/nested/l1-lib.sh for
# run_l2): one L2 with a virtio-fs share of an L1 directory and a 32 MiB ext4 image as
# vda, both on L1's in-memory root; the guest runs the same workload on each
# (fs_bench in resources/guest/init). FS_BENCH_ARGS carries the sizes.
mkdir -p /tmp/bench-share
cp /l2/disk.ext4 /tmp/bench.ext4
run_l2 fs-bench --kernel /l2/vmlinux --initrd /l2/initramfs.cpio --mem 256M \
    --fs tag=bench,path=/tmp/bench-share --disk path=/tmp/bench.ext4 \
    --cmdline "noxsave minivmm.action=fs-bench $FS_BENCH_ARGS"
