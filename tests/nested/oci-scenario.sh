# L1 scenario of tests/oci_nested.rs (run with MINIVMM_NESTED_CONTAINERD=1): Debian's
# containerd runs a busybox image's containers through minivmm-oci, each in an L2
# microVM. Sections "=== BEGIN/END name rc=N" hold each container's output; "OCI:"
# lines are what L1 saw around them. oci_env (l1-lib.sh) starts containerd.
oci_run() { timeout 240 ctr run --snapshotter native --runc-binary "$RUNTIME" "$@"; }

# section NAME CMD...: CMD's output between markers, with its status.
section() {
    name=$1; shift
    echo "=== BEGIN $name"
    "$@" > /tmp/section.out 2>&1
    rc=$?
    cat /tmp/section.out
    echo "=== END $name rc=$rc"
}

# task_state ID: the task's status column in `ctr task ls` (empty if none).
task_state() { ctr task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $3}'; }
task_pid() { ctr task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $2}'; }
wait_state() {
    for _ in $(seq 1 600); do [ "$(task_state "$1")" = "$2" ] && return 0; sleep 0.2; done
    echo "OCI: $1 never reached $2 (now '$(task_state "$1")')"
    ctr task ls
    ps -o pid,ppid,stat,args | grep -v '\[' | tail -n 30
    for d in /run/containerd/runc/default/*; do
        echo "--- $d"; tail -n 5 "$d/console.log"
    done
    cat /run/containerd/io.containerd.runtime.v2.task/default/*/log.json 2>/dev/null | tail -n 10
    return 1
}

oci_env
section oci-echo oci_run --rm "$IMAGE" c-echo echo hello-from-a-microvm
section oci-exit oci_run --rm "$IMAGE" c-exit sh -c 'echo before-exit; exit 3'
echo "host file" > /tmp/hostdir/from-l1
section oci-inside oci_run --rm --env FOO=bar --cwd /bin --memory-limit 134217728 --cpus 2 \
    --mount type=bind,src=/tmp/hostdir,dst=/host,options=rbind:ro "$IMAGE" c-inside \
    sh -c 'echo "kernel $(busybox uname -r)"; echo "foo=$FOO cwd=$(pwd)"; busybox grep MemTotal /proc/meminfo; echo "cpus $(busybox nproc)"; cat /host/from-l1; echo x > /host/new 2>/dev/null || echo "bind read-only"; busybox ls /dev; echo "ifaces $(busybox ls /sys/class/net | busybox tr "\n" " ")"; id'

# A terminal: ctr needs one itself (util-linux script gives it one); the container's
# process names its terminal in its own /dev/pts.
section oci-tty script -qec "timeout 240 ctr run -t --rm --snapshotter native --runc-binary $RUNTIME $IMAGE c-tty sh -c 'busybox tty; echo tty-ok'" /dev/null

# kill: a sleeping container stopped by `ctr task kill` (SIGTERM in the guest).
oci_run --rm "$IMAGE" c-sleep sleep 600 > /tmp/sleep.out 2>&1 &
sleeper=$!
if wait_state c-sleep RUNNING; then
    pid=$(task_pid c-sleep)
    echo "OCI: c-sleep running pid=$pid netns-taps=$(nsenter --net=/proc/$pid/ns/net ip -o link 2>/dev/null | awk -F': ' '{print $2}' | tr '\n' ',')"
    ctr task kill c-sleep
fi
wait "$sleeper"
echo "OCI: c-sleep exit=$? $(cat /tmp/sleep.out)"

# Writes in the container's root land in its snapshot on L1.
section oci-write oci_run "$IMAGE" c-write sh -c 'echo written-in-the-vm > /hello.txt; mkdir /made; echo y > /made/z; rm /bin/true; echo done'
f=$(find /var/lib/containerd/io.containerd.snapshotter.v1.native/snapshots -name hello.txt | head -n 1)
echo "OCI: snapshot file=$f content=$(cat "$f" 2>/dev/null) made=$(cat "${f%/hello.txt}/made/z" 2>/dev/null) true-removed=$([ -e "${f%/hello.txt}/bin/true" ] && echo no || echo yes)"
ctr container rm c-write
# The snapshot goes at once; its files when containerd's collector runs.
for _ in $(seq 1 100); do [ -e "$f" ] || break; sleep 0.2; done
echo "OCI: after rm snapshots=$(ctr snapshots --snapshotter native ls | grep -c c-write) snapshot-file-left=$([ -e "$f" ] && echo yes || echo no)"

# Two containers at once, each its own microVM. The second starts once the first
# runs: two L2 kernels booting at the same moment in this TCG-emulated L1 triple-fault
# one of them early in boot (seen with plain minivmm too, noxsave or not: a platform
# limit, not the runtime's).
oci_run --rm "$IMAGE" c-a sh -c 'echo a-up; sleep 600' > /tmp/a.out 2>&1 &
a=$!
wait_state c-a RUNNING
oci_run --rm "$IMAGE" c-b sh -c 'echo b-up; sleep 600' > /tmp/b.out 2>&1 &
b=$!
if wait_state c-b RUNNING && [ "$(task_state c-a)" = RUNNING ]; then
    pa=$(task_pid c-a); pb=$(task_pid c-b)
    echo "OCI: two running pids=$pa,$pb alive=$([ -d /proc/$pa ] && [ -d /proc/$pb ] && echo both) ls=$(ctr task ls | awk 'NR > 1 {print $1 ":" $3}' | sort | tr '\n' ' ')"
fi
ctr task kill -s SIGKILL c-a
ctr task kill -s SIGKILL c-b
wait "$a"; ra=$?
wait "$b"; rb=$?
echo "OCI: two exits a=$ra b=$rb out=$(cat /tmp/a.out /tmp/b.out | tr '\n' ' ')"

# A network namespace as a CNI plugin leaves it: a veth with an address and a
# default route. minivmm-oci moves the address to the guest's eth0 at start.
ip2 netns add cni-test
ip2 link add veth-l1 type veth peer name eth0 netns cni-test
ip2 addr add 10.88.0.1/24 dev veth-l1
ip2 link set veth-l1 up
ip2 -n cni-test link set lo up
ip2 -n cni-test addr add 10.88.0.2/24 dev eth0
ip2 -n cni-test link set eth0 up
ip2 -n cni-test route add default via 10.88.0.1
oci_run --rm --with-ns network:/var/run/netns/cni-test "$IMAGE" c-net \
    sh -c 'busybox ip -4 -o addr show dev eth0; busybox ip route; busybox ping -c 3 -W 5 10.88.0.1; echo net-up; busybox sleep 30' > /tmp/net.out 2>&1 &
netc=$!
for _ in $(seq 1 600); do grep -q net-up /tmp/net.out 2>/dev/null && break; sleep 0.2; done
echo "OCI: L1 to the container: $(ping -c 3 -W 5 10.88.0.2 | grep 'packets transmitted')"
ctr task kill c-net
wait "$netc"
nrc=$?
echo "=== BEGIN oci-net"
cat /tmp/net.out
echo "=== END oci-net rc=$nrc"
echo "OCI: cni netns after: links=$(ip2 -n cni-test -o link | awk -F': ' '{print $2}' | cut -d@ -f1 | tr '\n' ',') $(ip2 -n cni-test -4 -o addr show dev eth0 | awk '{print $4}') $(ip2 -n cni-test route | grep default)"

# The same namespace, its VMM process killed (SIGKILL): delete gives the address back.
oci_run --rm --with-ns network:/var/run/netns/cni-test "$IMAGE" c-net2 \
    sh -c 'echo net2-up; busybox sleep 600' > /tmp/net2.out 2>&1 &
n2=$!
for _ in $(seq 1 600); do grep -q net2-up /tmp/net2.out 2>/dev/null && break; sleep 0.2; done
echo "OCI: cni netns while running: $(ip2 -n cni-test -4 -o addr show dev eth0 | awk '{print $4}')|$(ip2 -n cni-test -o link | grep -c minivmm-br0)"
ctr task kill -s SIGKILL c-net2
wait "$n2"
echo "OCI: cni netns after kill: rc=$? links=$(ip2 -n cni-test -o link | awk -F': ' '{print $2}' | cut -d@ -f1 | tr '\n' ',') $(ip2 -n cni-test -4 -o addr show dev eth0 | awk '{print $4}') $(ip2 -n cni-test route | grep default)"

# Nothing left behind.
sleep 1
echo "OCI: left tasks=$(ctr task ls -q | wc -l) containers=$(ctr container ls -q | wc -l) state=$(ls /run/containerd/runc/default 2>/dev/null | wc -l) keepers=$(ps -o args | grep -c '[m]inivmm-oci.*keeper') taps=$(ls /sys/class/net | grep -c tap)"
grep -i 'level=error' /tmp/containerd.log | tail -n 5
