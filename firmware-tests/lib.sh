# Helpers sourced by every guest test. Runs in the guest's busybox sh.
# /tests/expect.conf (written by scripts/guest-test) describes the configured device:
#   SERIAL, MDTS, NS_COUNT, and per namespace i (1..NS_COUNT): NSi_NSID NSi_LBS NSi_BLOCKS
#   NSi_MSSRL NSi_MCL NSi_MSRC
. /tests/expect.conf

fail() {
    echo "FAIL-REASON: $*"
    exit 1
}

# field KEY: value of "KEY : value" in nvme-cli's human output on stdin.
field() {
    awk -F: -v k="$1" '{g=$1; gsub(/[ \t]/,"",g)} g==k {v=$2; for(i=3;i<=NF;i++) v=v":"$i; sub(/^[ \t]*/,"",v); sub(/[ \t]*$/,"",v); print v; exit}'
}

# expect_eq WHAT GOT WANT
expect_eq() {
    [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
}

# ns_var I NAME: the value of NS<I>_<NAME> from expect.conf.
ns_var() {
    eval "echo \${NS$1_$2}"
}

# dev_of I: the block device of namespace I.
dev_of() {
    echo "/dev/nvme0n$(ns_var "$1" NSID)"
}

# A file of N random bytes (multiple of 4096) at PATH.
random_file() {
    dd if=/dev/urandom of="$1" bs=4096 count=$(($2 / 4096)) 2>/dev/null
}
