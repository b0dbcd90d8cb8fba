# CHECKS: MSSRL, MCL and MSRC of every namespace: exactly at the limit succeeds, one past it fails with Command Size Limit Exceeded (0x4183); out-of-range source or destination fails with LBA Out of Range (0x4080)
. /tests/lib.sh
nvme_only
i=1
while [ $i -le $NS_COUNT ]; do
    d=$(dev_of $i) nsid=$(ns_var $i NSID) blocks=$(ns_var $i BLOCKS)
    mssrl=$(ns_var $i MSSRL) mcl=$(ns_var $i MCL) msrc=$(ns_var $i MSRC)
    n="--namespace-id=$nsid"
    dst=$((blocks / 2))
    # MSSRL: one range of exactly MSSRL blocks (if MCL allows it), then MSSRL+1.
    if [ $mssrl -le $mcl ]; then
        copy_expect_status success $d --sdlba=$dst --slbs=0 --blocks=$((mssrl - 1))
        if [ $mssrl -lt 65536 ] && [ $((mssrl + 1)) -le $mcl ]; then
            copy_expect_status 0x4183 $d --sdlba=$dst --slbs=0 --blocks=$mssrl
        fi
    fi
    # MSRC: MSRC+1 one-block ranges, then MSRC+2 (if MCL allows that many blocks).
    ranges=$((msrc + 1))
    if [ $ranges -le $mcl ]; then
        copy_expect_status success $d --sdlba=$dst --slbs=$(seq_list 0 2 $ranges) --blocks=$(repeat_list 0 $ranges)
        if [ $((ranges + 1)) -le $mcl ] && [ $ranges -lt 256 ]; then
            copy_expect_status 0x4183 $d --sdlba=$dst --slbs=$(seq_list 0 2 $((ranges + 1))) --blocks=$(repeat_list 0 $((ranges + 1)))
        fi
    fi
    # MCL: ranges of at most MSSRL blocks adding up to exactly MCL, then MCL+1.
    per=$mssrl
    count=$(((mcl + per - 1) / per))
    if [ $count -le $ranges ] && [ $((mcl + 1)) -lt $dst ]; then
        last=$((mcl - per * (count - 1)))
        slbs=$(seq_list 0 $per $count)
        blks="$(repeat_list $((per - 1)) $((count - 1)))"
        copy_expect_status success $d --sdlba=$dst --slbs=$slbs --blocks=${blks:+$blks,}$((last - 1))
        count1=$(((mcl + 1 + per - 1) / per))
        if [ $count1 -le $ranges ]; then
            last1=$((mcl + 1 - per * (count1 - 1)))
            blks1="$(repeat_list $((per - 1)) $((count1 - 1)))"
            copy_expect_status 0x4183 $d --sdlba=$dst --slbs=$(seq_list 0 $per $count1) --blocks=${blks1:+$blks1,}$((last1 - 1))
        fi
    else
        echo "$d: MCL=$mcl needs more than MSRC+1=$ranges ranges of MSSRL=$mssrl; exact-MCL case skipped"
    fi
    # Bounds: a source range ending one block past the end, a destination likewise.
    copy_expect_status success $d --sdlba=$dst --slbs=$((blocks - 1)) --blocks=0
    copy_expect_status 0x4080 $d --sdlba=$dst --slbs=$((blocks - 1)) --blocks=1
    copy_expect_status success $d --sdlba=$((blocks - 2)) --slbs=0 --blocks=1
    copy_expect_status 0x4080 $d --sdlba=$((blocks - 1)) --slbs=0 --blocks=1
    i=$((i + 1))
done
