# CHECKS: kernel copy offload at the end of the device: a copy whose source or destination runs past the last block is not reported as done, and no Copy past the end reaches the device (vnvme's counters: LBA Out of Range would mean the kernel left the bounds check to the device)
. /tests/lib.sh
. /tests/kcopy-lib.sh
nvme_only
kcopy_setup
ns_limits 1
last=$((NSBLOCKS - 1))
bad=""
attempt() { # ID WHAT CMD...: the kernel must refuse; report whether the device saw the Copy
    id=$1 what=$2
    shift 2
    if known_kernel_bug "$id-hang"; then
        echo "KNOWN-KERNEL-BUG ${KERNEL_SERIES:-?} $id-hang: $what: not run (it hangs this kernel)"
        return
    fi
    [ -n "$CONTROL_TTY" ] && host_ctl reset-stats >/dev/null
    timeout 60 "$@" >/tmp/kb.out 2>&1
    rc=$?
    seen=""
    if [ -n "$CONTROL_TTY" ] && command -v jq >/dev/null 2>&1; then
        ctl_json query-stats
        seen=$(copy_stats $NSID)
    fi
    echo "$what: $(head -n1 /tmp/kb.out)${seen:+; the device saw $seen}"
    case $rc in
    0) kernel_bug past-the-end-accepted "$what: the kernel reported success ($(head -n1 /tmp/kb.out))" ;;
    124) kernel_bug "$id-hang" "$what: no answer within 60 s" ;;
    esac
    # A Copy the device refused with LBA Out of Range: the kernel left the check to it.
    case "$(stat_of "$seen" errors)" in
    *0x4080*) kernel_bug no-bounds-check "$what: the kernel sent the device a Copy past the end of the namespace ($seen) instead of refusing it" ;;
    esac
}
if [ "$IFACE" = blkcpy ]; then
    attempt blkcpy-dst-past-end "BLKCPY destination past the end" kcopy blkcpy $DEV $((last * LBS)) 0 $((2 * LBS))
    attempt blkcpy-src-past-end "BLKCPY source past the end" kcopy blkcpy $DEV 0 $((last * LBS)) $((2 * LBS))
    attempt blkcpy-vec-src-past-end "BLKCPY_VEC source past the end" kcopy blkcpy-vec $DEV 0 "$((8 * LBS)):$LBS,$((last * LBS)):$((2 * LBS))"
else
    attempt cfr-dst-past-end "copy_file_range destination past the end" kcopy cfr $DEV 0 $((last * LBS)) $((2 * LBS))
    attempt cfr-src-past-end "copy_file_range source past the end" kcopy cfr $DEV $((last * LBS)) 0 $((2 * LBS))
fi
