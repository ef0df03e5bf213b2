// Block maps: a disk's content at one moment, a 64-bit hash per 64 KiB block, computed from the disk's
// files on the datastore at every snapshot (cbt.go compares two of them to answer QueryChangedDiskAreas).
//
// It reads every byte the files hold, since nothing else tells which blocks a write touched, but no
// more: only the blocks holding data (SEEK_DATA/SEEK_HOLE; holes read as zeros, as a thin disk that
// never wrote them), each hashed in place in a read-only mapping of its file (no copy), by one worker
// per CPU. A block that is not wholly inside one extent's file (a descriptor's extent boundary, the
// file's end) is assembled in a buffer first, zeros where no file holds it.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"sync"
	"syscall"
	"time"
)

const seekData = 3 // SEEK_DATA
const seekHole = 4 // SEEK_HOLE

// blockMap is a disk's content at one moment: per block, its hash, or 0 when it reads as zeros (a hole
// in the file, or zeros written).
type blockMap struct {
	size   int64
	hashes []uint64
}

// mappedExtent is one flat extent with its file mapped read-only: disk bytes [diskOffset, diskOffset+size)
// are data[fileOffset-mapOffset:], of which the first `avail` bytes exist in the file (the rest reads as zeros).
type mappedExtent struct {
	flatExtent
	data  []byte // the mapping, from mapOffset (fileOffset rounded down to a page)
	skip  int64  // fileOffset - mapOffset
	avail int64  // bytes of the extent that lie before the file's end
}

// bytesAt returns the extent's bytes for disk range [lo, hi) when they all lie in the file, else nil.
func (e *mappedExtent) bytesAt(lo, hi int64) []byte {
	if e.data == nil || lo < e.diskOffset || hi > e.diskOffset+e.avail {
		return nil
	}
	at := e.skip + lo - e.diskOffset
	return e.data[at : at+hi-lo]
}

// readMap hashes every block of the disk; blocks reading as zeros (holes, SEEK_DATA; or zeros) are 0.
func readMap(extents []flatExtent, capacity int64) (m *blockMap, err error) {
	m = &blockMap{size: capacity, hashes: make([]uint64, (capacity+cbtBlock-1)/cbtBlock)}
	var mapped []*mappedExtent
	defer func() {
		for _, e := range mapped {
			if e.data != nil {
				_ = syscall.Munmap(e.data)
			}
		}
	}()
	var blocks []int64 // the blocks that hold data in some file
	for _, e := range extents {
		if e.path == "" || e.diskOffset >= capacity {
			continue // a ZERO extent
		}
		me, touched, err := mapExtent(e, capacity)
		if err != nil {
			return nil, err
		}
		mapped = append(mapped, me)
		blocks = append(blocks, touched...)
	}
	sort.Slice(blocks, func(i, j int) bool { return blocks[i] < blocks[j] })
	blocks = unique(blocks)

	workers := runtime.NumCPU()
	if workers > 8 {
		workers = 8
	}
	per := (len(blocks) + workers - 1) / workers
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers && w*per < len(blocks); w++ {
		lo, hi := w*per, (w+1)*per
		if hi > len(blocks) {
			hi = len(blocks)
		}
		wg.Add(1)
		go func(w int, mine []int64) {
			defer wg.Done()
			errs[w] = hashBlocks(mine, mapped, capacity, m)
		}(w, blocks[lo:hi])
	}
	wg.Wait()
	return m, errors.Join(errs...)
}

// mapExtent maps the extent's file read-only and lists the disk blocks its data (SEEK_DATA) touches.
func mapExtent(e flatExtent, capacity int64) (*mappedExtent, []int64, error) {
	f, err := os.Open(e.path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close() // the mapping outlives the descriptor
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := e.size
	if e.diskOffset+size > capacity {
		size = capacity - e.diskOffset
	}
	fileEnd := e.fileOffset + size
	if st.Size() < fileEnd {
		fileEnd = st.Size() // beyond the file's end the disk reads as zeros
	}
	me := &mappedExtent{flatExtent: e, avail: fileEnd - e.fileOffset}
	if me.avail <= 0 {
		me.avail = 0
		return me, nil, nil
	}
	page := int64(os.Getpagesize())
	mapOffset := e.fileOffset / page * page
	me.skip = e.fileOffset - mapOffset
	me.data, err = syscall.Mmap(int(f.Fd()), mapOffset, int(fileEnd-mapOffset), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap %s: %w", e.path, err)
	}
	var touched []int64
	fd := int(f.Fd())
	for pos := e.fileOffset; pos < fileEnd; {
		data, err := syscall.Seek(fd, pos, seekData)
		if err != nil || data >= fileEnd {
			break // ENXIO: no data after pos
		}
		hole, err := syscall.Seek(fd, data, seekHole)
		if err != nil || hole > fileEnd {
			hole = fileEnd
		}
		first := (e.diskOffset + data - e.fileOffset) / cbtBlock
		last := (e.diskOffset + hole - e.fileOffset - 1) / cbtBlock
		for b := first; b <= last; b++ {
			touched = append(touched, b)
		}
		pos = hole
	}
	return me, touched, nil
}

func unique(sorted []int64) []int64 {
	out := sorted[:0]
	for i, b := range sorted {
		if i == 0 || b != sorted[i-1] {
			out = append(out, b)
		}
	}
	return out
}

// hashBlocks fills m.hashes for `blocks`. A file shrunk under the mapping faults (SIGBUS): that is an
// error of this snapshot, not the simulator's end.
func hashBlocks(blocks []int64, extents []*mappedExtent, capacity int64, m *blockMap) (err error) {
	debug.SetPanicOnFault(true)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading a disk file failed: %v", r)
		}
	}()
	var buf []byte
	for _, b := range blocks {
		lo, hi := b*cbtBlock, (b+1)*cbtBlock
		if hi > capacity {
			hi = capacity
		}
		var block []byte
		for _, e := range extents {
			if block = e.bytesAt(lo, hi); block != nil {
				break
			}
		}
		if block == nil { // straddles extents or a file's end: assembled, zeros where no file holds it
			if buf == nil {
				buf = make([]byte, cbtBlock)
			}
			block = buf[:hi-lo]
			clear(block)
			for _, e := range extents {
				from, to := max(lo, e.diskOffset), min(hi, e.diskOffset+e.avail)
				if to > from {
					copy(block[from-lo:], e.bytesAt(from, to))
				}
			}
		}
		h := blockHash(block)
		if len(block) == cbtBlock && h == zeroBlockHash || len(block) < cbtBlock && bytes.Equal(block, zeros[:len(block)]) {
			continue // reads as zeros: left out of "*", as a thin disk that never wrote it
		}
		if h == 0 {
			h = 1 // 0 stands for "reads as zeros"
		}
		m.hashes[b] = h
	}
	return nil
}

var zeros = make([]byte, cbtBlock)

// hashSeed is per process: block maps are only ever compared within this simulator's lifetime.
var hashSeed = maphash.MakeSeed()

// blockHash is a seeded 64-bit maphash (AES-based, several GB/s, one pass over the block): two contents
// of one block colliding is a 2^-64 chance.
func blockHash(block []byte) uint64 {
	return maphash.Bytes(hashSeed, block)
}

// zeroBlockHash tells a whole block of zeros without a second pass over it (a collision: 2^-64 again).
var zeroBlockHash = blockHash(make([]byte, cbtBlock))

// ---- fresh maps: hashed once per state of the files, ahead of the snapshot when the files are quiet ----------
//
// A disk's map is kept per state of its files, a state being each file's identity, size, mtime and ctime
// (ctime cannot be set back from user space). A watcher per disk looks at that state every pollEvery and,
// once the files have been quiet for `quiet`, hashes them in the background; a snapshot whose files are
// still in the state a kept map was read in takes that map at once, else waits for the hashing under way
// of that state, else hashes itself. A map is kept only when the files' state is the same after the read as
// before it, and the read began more than `quiet` after their last change: a write from the read's start
// on then gets a later ctime (the kernel's file timestamps lag the clock by at most a tick), so it changes
// the state, and the kept map is not taken for the new content.

const pollEvery = 50 * time.Millisecond
const quiet = 50 * time.Millisecond

type fileStamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime syscall.Timespec
}

type freshMap struct {
	path     string
	capacity int64

	mu           sync.Mutex
	stamp        []fileStamp // the state m was read in
	m            *blockMap
	running      chan struct{} // closed when the hashing under way (of runningStamp) ends
	runningStamp []fileStamp
}

var freshMaps = struct {
	sync.Mutex
	byDisk map[string]*freshMap
}{byDisk: map[string]*freshMap{}}

// diskState reads the disk's layout and the state of its files; newest is their latest change.
func diskState(path string, capacity int64) ([]flatExtent, []fileStamp, time.Time, error) {
	extents, err := diskLayout(path, capacity)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	var stamps []fileStamp
	var newest time.Time
	files := []string{path}
	for _, e := range extents {
		if e.path != "" && e.path != path {
			files = append(files, e.path)
		}
	}
	for _, name := range files {
		var st syscall.Stat_t
		if err := syscall.Stat(name, &st); err != nil {
			return nil, nil, time.Time{}, &os.PathError{Op: "stat", Path: name, Err: err}
		}
		s := fileStamp{uint64(st.Dev), st.Ino, st.Size, st.Mtim, st.Ctim}
		stamps = append(stamps, s)
		for _, t := range []syscall.Timespec{st.Mtim, st.Ctim} {
			if at := time.Unix(t.Sec, t.Nsec); at.After(newest) {
				newest = at
			}
		}
	}
	return extents, stamps, newest, nil
}

func sameState(a, b []fileStamp) bool {
	if len(a) != len(b) || a == nil {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// currentMap is the block map of the disk at `path` as its files are now.
func currentMap(path string, capacity int64) (*blockMap, error) {
	f := watched(path, capacity)
	for waited := false; ; waited = true {
		extents, stamp, newest, err := diskState(path, capacity)
		if err != nil {
			return nil, err
		}
		f.mu.Lock()
		if sameState(f.stamp, stamp) {
			m := f.m
			f.mu.Unlock()
			return m, nil
		}
		if running := f.running; running != nil && sameState(f.runningStamp, stamp) && !waited {
			f.mu.Unlock()
			<-running
			continue
		}
		f.mu.Unlock()
		return f.hash(extents, stamp, newest)
	}
}

// watched returns the disk's entry, its watcher started with it.
func watched(path string, capacity int64) *freshMap {
	key := fmt.Sprintf("%s\x00%d", path, capacity)
	freshMaps.Lock()
	defer freshMaps.Unlock()
	f := freshMaps.byDisk[key]
	if f == nil {
		f = &freshMap{path: path, capacity: capacity}
		freshMaps.byDisk[key] = f
		go f.watch(key)
	}
	return f
}

// hash reads the map in state `stamp` (announced as under way, so the watcher does not read it twice) and
// keeps it when that state held throughout and was quiet before the read began.
func (f *freshMap) hash(extents []flatExtent, stamp []fileStamp, newest time.Time) (*blockMap, error) {
	done := make(chan struct{})
	f.mu.Lock()
	f.running, f.runningStamp = done, stamp
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		if f.running == done {
			f.running, f.runningStamp = nil, nil
		}
		f.mu.Unlock()
		close(done)
	}()
	began := time.Now()
	m, err := readMap(extents, f.capacity)
	if err != nil {
		return nil, err
	}
	if _, after, _, err := diskState(f.path, f.capacity); err == nil && sameState(after, stamp) && newest.Before(began.Add(-quiet)) {
		f.mu.Lock()
		f.stamp, f.m = stamp, m
		f.mu.Unlock()
	}
	return m, nil
}

// watch hashes the disk's files in the background whenever they changed and have been quiet since; it ends
// when they are gone.
func (f *freshMap) watch(key string) {
	for {
		time.Sleep(pollEvery)
		extents, stamp, newest, err := diskState(f.path, f.capacity)
		if errors.Is(err, os.ErrNotExist) {
			freshMaps.Lock()
			delete(freshMaps.byDisk, key)
			freshMaps.Unlock()
			return
		}
		if err != nil || time.Since(newest) < quiet {
			continue // unreadable for now, or still being written
		}
		f.mu.Lock()
		known := sameState(f.stamp, stamp) || f.running != nil && sameState(f.runningStamp, stamp)
		f.mu.Unlock()
		if !known {
			_, _ = f.hash(extents, stamp, newest)
		}
	}
}
