// Changed-block tracking for vcsim, which has none: QueryChangedDiskAreas, a ChangeId per disk backing
// at each snapshot, and changeTrackingEnabled (with the per-disk ctkEnabled extra config) through
// ReconfigVM_Task.
//
// Built with govmomi's extension pattern (simulator/example_extend_test.go): cbtVM embeds
// simulator.VirtualMachine and replaces it in the Map, so the SOAP dispatcher finds the methods
// defined here by name. The answers are computed from the disk files on the datastore: every
// snapshot records a block map (blockmap.go: a hash per 64 KiB block, holes skipped through SEEK_DATA)
// of each tracked disk, and a changeId names one such map. QueryChangedDiskAreas answers with the blocks
// whose content differs between the snapshot's map and the map the changeId names; for "*", the
// allocated blocks. An unknown changeId (never issued, or issued before tracking was reset) is a
// FileFault, as vCenter answers.
//
// vcsim's own snapshot methods look the VM up as *simulator.VirtualMachine, which the wrapper is not:
// CreateSnapshot, RemoveSnapshot, RemoveAllSnapshots and RevertToSnapshot are therefore implemented
// here too, on the snapshot tree only (vcsim itself creates no delta disks either).
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const cbtBlock = 64 << 10 // the tracking granularity: extents are whole blocks

// cbtPageBytes bounds the disk range one QueryChangedDiskAreas answer covers; clients page with startOffset.
var cbtPageBytes int64 = 1 << 30

// diskTracking is one disk's tracking epoch: the maps its changeIds name. A reset starts a new epoch.
type diskTracking struct {
	epoch string
	seq   int
	maps  map[string]*blockMap
}

type tracker struct {
	mu        sync.Mutex
	disks     map[string]*diskTracking                          // "<vm moref>/<device key>"
	snapshots map[types.ManagedObjectReference]map[int32]string // snapshot → device key → changeId
}

var cbt = &tracker{
	disks:     map[string]*diskTracking{},
	snapshots: map[types.ManagedObjectReference]map[int32]string{},
}

var epochCounter int64

func newEpoch() string {
	n := atomic.AddInt64(&epochCounter, 1)
	now := time.Now().UnixNano()
	return fmt.Sprintf("52 %02x %02x %02x %02x %02x %02x %02x-%02x %02x %02x %02x %02x %02x %02x %02x",
		byte(n), byte(now>>8), byte(now>>16), byte(now>>24), byte(now>>32), byte(now>>40), byte(now>>48),
		byte(now>>56), byte(n>>8), byte(now), byte(now>>12), byte(now>>20), byte(now>>28), byte(now>>36), byte(n>>16))
}

func diskKey(vm types.ManagedObjectReference, key int32) string {
	return fmt.Sprintf("%s/%d", vm.Value, key)
}

// ---- the VM wrapper ----------------------------------------------------------------------------------

// The simulator's property collector finds the managed object through the wrapper's first field,
// which must therefore be the embedded struct itself (a pointer there makes it panic).
type cbtVM struct {
	simulator.VirtualMachine
}

type cbtSnapshot struct {
	simulator.VirtualMachineSnapshot
}

// wrapVMs replaces every VM in the Map with its CBT-aware wrapper (same moref).
func wrapVMs() {
	for _, entity := range simulator.Map.All("VirtualMachine") {
		if vm, ok := entity.(*simulator.VirtualMachine); ok {
			simulator.Map.Put(&cbtVM{*vm}) // the wrapper takes the VM's place (same moref); nothing else points at it
		}
	}
}

func fileFault(file string, format string, args ...interface{}) *soap.Fault {
	return simulator.Fault(fmt.Sprintf(format, args...), &types.FileFault{File: file})
}

// datastoreFile resolves "[ds] path" to the file's local path in the simulator's datastore directory.
func datastoreFile(name string) (string, error) {
	if !strings.HasPrefix(name, "[") {
		return "", fmt.Errorf("not a datastore path: %q", name)
	}
	end := strings.Index(name, "]")
	if end < 0 {
		return "", fmt.Errorf("not a datastore path: %q", name)
	}
	dsName, rel := name[1:end], strings.TrimSpace(name[end+1:])
	for _, entity := range simulator.Map.All("Datastore") {
		ds, ok := entity.(*simulator.Datastore)
		if ok && ds.Name == dsName {
			return filepath.Join(ds.Info.GetDatastoreInfo().Url, rel), nil
		}
	}
	return "", fmt.Errorf("no datastore %q", dsName)
}

// flatExtent maps disk bytes [diskOffset, diskOffset+size) to a file at fileOffset ("" = zeros).
type flatExtent struct {
	diskOffset, size int64
	path             string
	fileOffset       int64
}

var extentLine = regexp.MustCompile(`^(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\w+)(?:\s+"([^"]+)"(?:\s+(\d+))?)?`)

// diskLayout reads a disk file: a VMDK descriptor with FLAT/VMFS/ZERO extents, or a flat (raw) file.
func diskLayout(path string, capacity int64) ([]flatExtent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	head := make([]byte, 1024)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if bytes.HasPrefix(head, []byte("KDMV")) || bytes.HasPrefix(head, []byte("COWD")) {
		return nil, errors.New("sparse VMDKs are not tracked by this simulator: use a flat disk")
	}
	if !bytes.Contains(head, []byte("# Disk DescriptorFile")) && !bytes.Contains(head, []byte("createType")) {
		return []flatExtent{{0, capacity, path, 0}}, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	var extents []flatExtent
	var at int64
	scanner := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for scanner.Scan() {
		m := extentLine.FindStringSubmatch(strings.TrimSpace(scanner.Text()))
		if m == nil {
			continue
		}
		sectors, _ := strconv.ParseInt(m[2], 10, 64)
		size := sectors * 512
		switch strings.ToUpper(m[3]) {
		case "FLAT", "VMFS":
			offset, _ := strconv.ParseInt(m[5], 10, 64)
			extents = append(extents, flatExtent{at, size, filepath.Join(filepath.Dir(path), m[4]), offset * 512})
		case "ZERO":
			extents = append(extents, flatExtent{at, size, "", 0})
		default:
			return nil, fmt.Errorf("%s extents are not tracked by this simulator: use a flat disk", m[3])
		}
		at += size
	}
	return extents, nil
}

// ---- configuration: which disks are tracked -----------------------------------------------------------

func (vm *cbtVM) disks() []*types.VirtualDisk {
	var out []*types.VirtualDisk
	for _, d := range vm.Config.Hardware.Device {
		if disk, ok := d.(*types.VirtualDisk); ok {
			out = append(out, disk)
		}
	}
	return out
}

// diskSlot names a disk in the VM's extra config: "scsi0:1", "sata0:0", "ide1:0", "nvme0:0".
func (vm *cbtVM) diskSlot(disk *types.VirtualDisk) string {
	for _, d := range vm.Config.Hardware.Device {
		if d.GetVirtualDevice().Key != disk.ControllerKey {
			continue
		}
		unit := int32(0)
		if disk.UnitNumber != nil {
			unit = *disk.UnitNumber
		}
		switch c := d.(type) {
		case types.BaseVirtualSCSIController:
			return fmt.Sprintf("scsi%d:%d", c.GetVirtualSCSIController().BusNumber, unit)
		case *types.VirtualAHCIController:
			return fmt.Sprintf("sata%d:%d", c.BusNumber, unit)
		case *types.VirtualIDEController:
			return fmt.Sprintf("ide%d:%d", c.BusNumber, unit)
		case *types.VirtualNVMEController:
			return fmt.Sprintf("nvme%d:%d", c.BusNumber, unit)
		}
	}
	return ""
}

func (vm *cbtVM) extra(key string) (string, bool) {
	value, found := "", false
	for _, o := range vm.Config.ExtraConfig {
		if v := o.GetOptionValue(); v.Key == key {
			value, found = fmt.Sprint(v.Value), true // the last one wins, as in a .vmx
		}
	}
	return value, found
}

func (vm *cbtVM) setExtra(key, value string) {
	var kept []types.BaseOptionValue
	for _, o := range vm.Config.ExtraConfig {
		if o.GetOptionValue().Key != key {
			kept = append(kept, o)
		}
	}
	vm.Config.ExtraConfig = append(kept, &types.OptionValue{Key: key, Value: value})
}

func (vm *cbtVM) vmTracking() bool {
	return vm.Config.ChangeTrackingEnabled != nil && *vm.Config.ChangeTrackingEnabled
}

func (vm *cbtVM) diskTracked(disk *types.VirtualDisk) bool {
	if !vm.vmTracking() {
		return false
	}
	if value, ok := vm.extra(vm.diskSlot(disk) + ".ctkEnabled"); ok {
		return strings.EqualFold(value, "true")
	}
	return true
}

func setChangeID(backing types.BaseVirtualDeviceBackingInfo, id string) {
	switch b := backing.(type) {
	case *types.VirtualDiskFlatVer2BackingInfo:
		b.ChangeId = id
	case *types.VirtualDiskSparseVer2BackingInfo:
		b.ChangeId = id
	case *types.VirtualDiskSeSparseBackingInfo:
		b.ChangeId = id
	case *types.VirtualDiskRawDiskMappingVer1BackingInfo:
		b.ChangeId = id
	}
}

func backingFile(disk *types.VirtualDisk) string {
	if b, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
		return b.GetVirtualDeviceFileBackingInfo().FileName
	}
	return ""
}

func capacityOf(disk *types.VirtualDisk) int64 {
	if disk.CapacityInBytes > 0 {
		return disk.CapacityInBytes
	}
	return disk.CapacityInKB * 1024
}

// ReconfigVMTask: vcsim's reconfigure, then what vSphere does for changeTrackingEnabled: the
// ctkEnabled keys in the extra config, and tracking reset for disks it turns off (or back on).
func (vm *cbtVM) ReconfigVMTask(ctx *simulator.Context, req *types.ReconfigVM_Task) soap.HasFault {
	was := vm.vmTracking()
	wasDisk := map[int32]bool{}
	for _, disk := range vm.disks() {
		wasDisk[disk.Key] = vm.diskTracked(disk)
	}
	body := vm.VirtualMachine.ReconfigVMTask(ctx, req).(*methods.ReconfigVM_TaskBody)
	if task, ok := simulator.Map.Get(body.Res.Returnval).(*simulator.Task); !ok || task.Info.State != types.TaskInfoStateSuccess {
		return body
	}
	if enabled := req.Spec.ChangeTrackingEnabled; enabled != nil {
		word := "FALSE"
		if *enabled {
			word = "TRUE"
		}
		vm.setExtra("ctkEnabled", word)
		for _, disk := range vm.disks() {
			if slot := vm.diskSlot(disk); slot != "" {
				vm.setExtra(slot+".ctkEnabled", word)
			}
		}
	}
	cbt.mu.Lock()
	defer cbt.mu.Unlock()
	for _, disk := range vm.disks() {
		now := vm.diskTracked(disk)
		if !now || !was || !wasDisk[disk.Key] {
			// Off, or turned on again: what was tracked before no longer counts; tracking starts at the
			// next snapshot (vSphere's stun/unstun), until then the disk has no changeId.
			delete(cbt.disks, diskKey(vm.Self, disk.Key))
			setChangeID(disk.Backing, "")
		}
	}
	return body
}

// ---- snapshots -------------------------------------------------------------------------------------------

var snapshotIDs int32

func findInTree(tree []types.VirtualMachineSnapshotTree, ref types.ManagedObjectReference) *types.VirtualMachineSnapshotTree {
	for i := range tree {
		if tree[i].Snapshot == ref {
			return &tree[i]
		}
		if found := findInTree(tree[i].ChildSnapshotList, ref); found != nil {
			return found
		}
	}
	return nil
}

func parentInTree(tree []types.VirtualMachineSnapshotTree, ref types.ManagedObjectReference, parent *types.ManagedObjectReference) (*types.ManagedObjectReference, bool) {
	for _, node := range tree {
		if node.Snapshot == ref {
			return parent, true
		}
		self := node.Snapshot
		if p, ok := parentInTree(node.ChildSnapshotList, ref, &self); ok {
			return p, true
		}
	}
	return nil, false
}

func removeFromTree(tree []types.VirtualMachineSnapshotTree, ref types.ManagedObjectReference, children bool) []types.VirtualMachineSnapshotTree {
	var out []types.VirtualMachineSnapshotTree
	for _, node := range tree {
		if node.Snapshot == ref {
			if !children {
				out = append(out, node.ChildSnapshotList...)
			}
			continue
		}
		node.ChildSnapshotList = removeFromTree(node.ChildSnapshotList, ref, children)
		out = append(out, node)
	}
	return out
}

func allInTree(tree []types.VirtualMachineSnapshotTree) []types.ManagedObjectReference {
	var out []types.ManagedObjectReference
	for _, node := range tree {
		out = append(out, node.Snapshot)
		out = append(out, allInTree(node.ChildSnapshotList)...)
	}
	return out
}

// snapshotConfig copies the VM's configuration with disks of their own, so a snapshot keeps the changeIds
// its disks had when it was taken.
func (vm *cbtVM) snapshotConfig() types.VirtualMachineConfigInfo {
	config := *vm.Config
	devices := make([]types.BaseVirtualDevice, len(vm.Config.Hardware.Device))
	for i, d := range vm.Config.Hardware.Device {
		devices[i] = d
		if disk, ok := d.(*types.VirtualDisk); ok {
			copied := *disk
			switch b := disk.Backing.(type) {
			case *types.VirtualDiskFlatVer2BackingInfo:
				nb := *b
				copied.Backing = &nb
			case *types.VirtualDiskSparseVer2BackingInfo:
				nb := *b
				copied.Backing = &nb
			case *types.VirtualDiskSeSparseBackingInfo:
				nb := *b
				copied.Backing = &nb
			case *types.VirtualDiskRawDiskMappingVer1BackingInfo:
				nb := *b
				copied.Backing = &nb
			}
			devices[i] = &copied
		}
	}
	config.Hardware.Device = devices
	return config
}

// track records the block map of every tracked disk and gives each a new changeId.
func (vm *cbtVM) track(snapshot types.ManagedObjectReference) types.BaseMethodFault {
	cbt.mu.Lock()
	defer cbt.mu.Unlock()
	ids := map[int32]string{}
	for _, disk := range vm.disks() {
		if !vm.diskTracked(disk) {
			continue
		}
		file := backingFile(disk)
		path, err := datastoreFile(file)
		if err != nil {
			return &types.FileFault{File: file}
		}
		m, err := currentMap(path, capacityOf(disk))
		if err != nil {
			return &types.FileFault{File: file}
		}
		key := diskKey(vm.Self, disk.Key)
		t := cbt.disks[key]
		if t == nil {
			t = &diskTracking{epoch: newEpoch(), maps: map[string]*blockMap{}}
			cbt.disks[key] = t
		}
		t.seq++
		id := fmt.Sprintf("%s/%d", t.epoch, t.seq)
		t.maps[id] = m
		ids[disk.Key] = id
		setChangeID(disk.Backing, id)
	}
	cbt.snapshots[snapshot] = ids
	return nil
}

func (vm *cbtVM) CreateSnapshotTask(req *types.CreateSnapshot_Task) soap.HasFault {
	task := simulator.CreateTask(vm, "createSnapshot", func(t *simulator.Task) (types.AnyType, types.BaseMethodFault) {
		if req.Quiesce && (vm.Guest == nil || vm.Guest.ToolsRunningStatus != string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)) {
			return nil, &types.ToolsUnavailable{}
		}
		if vm.Snapshot == nil {
			vm.Snapshot = &types.VirtualMachineSnapshotInfo{}
		}
		inner := &simulator.VirtualMachineSnapshot{}
		inner.Vm = vm.Reference()
		simulator.Map.Put(inner) // gives it its moref
		if fault := vm.track(inner.Self); fault != nil {
			simulator.Map.Remove(inner.Self)
			return nil, fault
		}
		inner.Config = vm.snapshotConfig()
		simulator.Map.Put(&cbtSnapshot{*inner})

		node := types.VirtualMachineSnapshotTree{
			Snapshot:        inner.Self,
			Vm:              inner.Vm,
			Name:            req.Name,
			Description:     req.Description,
			Id:              atomic.AddInt32(&snapshotIDs, 1),
			CreateTime:      time.Now(),
			State:           vm.Runtime.PowerState,
			Quiesced:        req.Quiesce,
			ReplaySupported: types.NewBool(false),
		}
		var changes []types.PropertyChange
		if cur := vm.Snapshot.CurrentSnapshot; cur != nil {
			if parent, ok := simulator.Map.Get(*cur).(*cbtSnapshot); ok {
				parent.ChildSnapshot = append(parent.ChildSnapshot, inner.Self)
			}
			if node0 := findInTree(vm.Snapshot.RootSnapshotList, *cur); node0 != nil {
				node0.ChildSnapshotList = append(node0.ChildSnapshotList, node)
			}
			changes = append(changes, types.PropertyChange{Name: "snapshot.rootSnapshotList", Val: vm.Snapshot.RootSnapshotList})
		} else {
			changes = append(changes, types.PropertyChange{
				Name: "snapshot.rootSnapshotList",
				Val:  append(vm.Snapshot.RootSnapshotList, node),
			})
		}
		changes = append(changes, types.PropertyChange{Name: "snapshot.currentSnapshot", Val: inner.Self})
		changes = append(changes, types.PropertyChange{Name: "config.hardware.device", Val: vm.Config.Hardware.Device})
		simulator.Map.Update(vm, changes)
		return inner.Self, nil
	})
	return &methods.CreateSnapshot_TaskBody{Res: &types.CreateSnapshot_TaskResponse{Returnval: task.Run()}}
}

func (vm *cbtVM) forgetSnapshot(ref types.ManagedObjectReference) {
	cbt.mu.Lock()
	delete(cbt.snapshots, ref) // the changeIds it issued stay valid, as vSphere's tracking log keeps them
	cbt.mu.Unlock()
	simulator.Map.Remove(ref)
}

func (vm *cbtVM) RemoveAllSnapshotsTask(ctx *simulator.Context, req *types.RemoveAllSnapshots_Task) soap.HasFault {
	task := simulator.CreateTask(vm, "RemoveAllSnapshots", func(t *simulator.Task) (types.AnyType, types.BaseMethodFault) {
		if vm.Snapshot == nil {
			return nil, nil
		}
		refs := allInTree(vm.Snapshot.RootSnapshotList)
		simulator.Map.Update(vm, []types.PropertyChange{{Name: "snapshot", Val: nil}})
		for _, ref := range refs {
			vm.forgetSnapshot(ref)
		}
		return nil, nil
	})
	return &methods.RemoveAllSnapshots_TaskBody{Res: &types.RemoveAllSnapshots_TaskResponse{Returnval: task.Run()}}
}

func (s *cbtSnapshot) RemoveSnapshotTask(ctx *simulator.Context, req *types.RemoveSnapshot_Task) soap.HasFault {
	// The task's entity is the VM, as vCenter has it (a snapshot is not a ManagedEntity).
	vm, ok := simulator.Map.Get(s.Vm).(*cbtVM)
	if !ok {
		return &methods.RemoveSnapshot_TaskBody{Fault_: simulator.Fault("", &types.ManagedObjectNotFound{Obj: s.Vm})}
	}
	task := simulator.CreateTask(vm, "removeSnapshot", func(t *simulator.Task) (types.AnyType, types.BaseMethodFault) {
		var removed []types.ManagedObjectReference
		simulator.Map.WithLock(vm, func() {
			if vm.Snapshot == nil {
				return
			}
			var changes []types.PropertyChange
			if cur := vm.Snapshot.CurrentSnapshot; cur != nil && *cur == req.This {
				parent, _ := parentInTree(vm.Snapshot.RootSnapshotList, req.This, nil)
				changes = append(changes, types.PropertyChange{Name: "snapshot.currentSnapshot", Val: parent})
			}
			removed = []types.ManagedObjectReference{req.This}
			if req.RemoveChildren {
				if node := findInTree(vm.Snapshot.RootSnapshotList, req.This); node != nil {
					removed = append(removed, allInTree(node.ChildSnapshotList)...)
				}
			}
			tree := removeFromTree(vm.Snapshot.RootSnapshotList, req.This, req.RemoveChildren)
			if len(tree) == 0 {
				changes = []types.PropertyChange{{Name: "snapshot", Val: nil}}
			} else {
				changes = append(changes, types.PropertyChange{Name: "snapshot.rootSnapshotList", Val: tree})
			}
			simulator.Map.Update(vm, changes)
		})
		for _, ref := range removed {
			vm.forgetSnapshot(ref)
		}
		return nil, nil
	})
	return &methods.RemoveSnapshot_TaskBody{Res: &types.RemoveSnapshot_TaskResponse{Returnval: task.Run()}}
}

func (s *cbtSnapshot) RevertToSnapshotTask(req *types.RevertToSnapshot_Task) soap.HasFault {
	// The task's entity is the VM, as vCenter has it (a snapshot is not a ManagedEntity).
	vm, ok := simulator.Map.Get(s.Vm).(*cbtVM)
	if !ok {
		return &methods.RevertToSnapshot_TaskBody{Fault_: simulator.Fault("", &types.ManagedObjectNotFound{Obj: s.Vm})}
	}
	task := simulator.CreateTask(vm, "revertToSnapshot", func(t *simulator.Task) (types.AnyType, types.BaseMethodFault) {
		simulator.Map.WithLock(vm, func() {
			simulator.Map.Update(vm, []types.PropertyChange{{Name: "snapshot.currentSnapshot", Val: s.Self}})
		})
		return nil, nil
	})
	return &methods.RevertToSnapshot_TaskBody{Res: &types.RevertToSnapshot_TaskResponse{Returnval: task.Run()}}
}

// ---- QueryChangedDiskAreas --------------------------------------------------------------------------

func (vm *cbtVM) QueryChangedDiskAreas(req *types.QueryChangedDiskAreas) soap.HasFault {
	body := &methods.QueryChangedDiskAreasBody{}
	var disk *types.VirtualDisk
	for _, d := range vm.disks() {
		if d.Key == req.DeviceKey {
			disk = d
		}
	}
	if disk == nil {
		body.Fault_ = simulator.Fault(fmt.Sprintf("no disk with key %d", req.DeviceKey),
			&types.InvalidArgument{InvalidProperty: "deviceKey"})
		return body
	}
	file := backingFile(disk)
	capacity := capacityOf(disk)
	if req.StartOffset < 0 || req.StartOffset >= capacity {
		body.Fault_ = simulator.Fault("startOffset beyond the disk's end", &types.InvalidArgument{InvalidProperty: "startOffset"})
		return body
	}
	if !vm.diskTracked(disk) {
		body.Fault_ = fileFault(file, "Error caused by file %s: change tracking is not enabled for this disk", file)
		return body
	}

	cbt.mu.Lock()
	t := cbt.disks[diskKey(vm.Self, disk.Key)]
	var current *blockMap
	if req.Snapshot != nil {
		ids, ok := cbt.snapshots[*req.Snapshot]
		if !ok {
			cbt.mu.Unlock()
			body.Fault_ = simulator.Fault("snapshot not found", &types.ManagedObjectNotFound{Obj: *req.Snapshot})
			return body
		}
		if t != nil {
			current = t.maps[ids[disk.Key]]
		}
	}
	var base *blockMap
	known := req.ChangeId == "*"
	if t != nil && !known {
		base, known = t.maps[req.ChangeId]
	}
	cbt.mu.Unlock()
	if !known || t == nil {
		body.Fault_ = fileFault(file, "Error caused by file %s", file)
		return body
	}
	if current == nil {
		if req.Snapshot != nil {
			// The snapshot was taken before tracking started for this disk.
			body.Fault_ = fileFault(file, "Error caused by file %s", file)
			return body
		}
		path, err := datastoreFile(file)
		if err == nil {
			current, err = currentMap(path, capacity)
		}
		if err != nil {
			body.Fault_ = fileFault(file, "Error caused by file %s: %v", file, err)
			return body
		}
	}

	end := req.StartOffset + cbtPageBytes
	if end > capacity {
		end = capacity
	}
	info := types.DiskChangeInfo{StartOffset: req.StartOffset, Length: end - req.StartOffset}
	first := req.StartOffset / cbtBlock
	for b := first; b*cbtBlock < end; b++ {
		now := current.hashes[b]
		changed := now != 0
		if base != nil {
			var then uint64
			if b < int64(len(base.hashes)) {
				then = base.hashes[b]
			}
			changed = now != then
		}
		if !changed {
			continue
		}
		start := b * cbtBlock
		if start < req.StartOffset {
			start = req.StartOffset
		}
		stop := (b + 1) * cbtBlock
		if stop > end {
			stop = end
		}
		areas := info.ChangedArea
		if n := len(areas); n > 0 && areas[n-1].Start+areas[n-1].Length == start {
			areas[n-1].Length += stop - start
		} else {
			info.ChangedArea = append(areas, types.DiskChangeExtent{Start: start, Length: stop - start})
		}
	}
	body.Res = &types.QueryChangedDiskAreasResponse{Returnval: info}
	return body
}
