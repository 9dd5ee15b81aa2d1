// Xen disk specs: one string of a domain config's `disk = [...]`, in every
// form xl(1) reads (xl-disk-configuration(5)) and xm wrote before it.
//
//   '/srv/disk.raw,raw,xvda,rw'          positional TARGET,FORMAT,VDEV,ACCESS
//   '/srv/disk.raw,,xvda'                 empty or missing ones take defaults
//   'format=qcow2, vdev=xvda, access=ro, target=/srv/a,b.qcow2'
//   '/root/boot.iso,,hdc,cdrom'           a flag among the positional ones
//   'phy:vg0/feisty,xvda1,w'              xm: a PREFIX: on the target, then
//   'tap:aio:/srv/feisty.img,sda1,w'        VDEV and ACCESS only
//   'file:/srv/install.iso,hdc:cdrom,r'   xm's cdrom suffix on the device
//
// Parameters that are not KEY=VALUE or a known flag fill the positional
// slots not yet given by name, in order; target= takes the rest of the
// spec, commas included. Each parameter may be given once. The defaults are
// xl's: format raw, access rw (ro for a cdrom). A cdrom may have no target:
// an empty drive.
//
// Keys: target, format (raw, qcow2), vdev, access (r, ro, w, rw, and xm's
// w! for a disk shared writable), devtype (disk, cdrom), backendtype (phy,
// tap, qdisk), specification (xen, virtio: how Xen presents it, which
// kiln's backends decide for themselves). Flags: cdrom, and the host-side
// hints direct-io-safe, discard, no-discard, trusted, untrusted, which
// change nothing a guest sees and are accepted as such. backend= (a driver
// domain), script= (a dom0 block script) and colo are refused by name: kiln
// opens the target itself on this host.
#pragma once

#include <string>
#include <string_view>

#include "base/error.h"
#include "formats/domain/domain_spec.h"

namespace kiln {

// Every error is ErrorKind::kBadInput at `where`, quoting the spec.
Result<DomainDisk> parse_xen_disk_spec(std::string_view spec, const Location& where);

// The xm form where it can say everything ('file:/srv/a.img,xvda1,w'), else
// xl's keyword form. It parses back to an equal disk.
std::string write_xen_disk_spec(const DomainDisk& disk);

}  // namespace kiln
