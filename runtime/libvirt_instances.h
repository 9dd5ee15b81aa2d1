// LibvirtInstances: kiln instances on a libvirt host, `--connect URI`
// (or $KILN_CONNECT). An instance is planned as for kiln's own qemu
// backend (one InstanceSpec: disks, kernel command line, personality), its
// images reach the host as volumes of kiln's storage pool (uploaded once,
// by content hash), and the domain is written by the one libvirt XML writer
// (formats/domain/libvirt_xml), marked as kiln's by its metadata, so that
// `kiln list --connect` shows kiln's domains and no others. Readiness is
// the guest agent's report on the serial console, read through libvirt's
// console stream from the domain's first instruction on (it starts
// paused until the stream is open).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/reporter.h"
#include "runtime/instance_plan.h"

namespace kiln {

// --connect's value, or $KILN_CONNECT's; "" : kiln's own runtime.
std::string connect_uri(const std::string& flag);

struct LibvirtBootOutcome {
  InstanceSpec spec;
  std::string why;  // the domain type, and why
  std::vector<std::string> uploaded;  // the volumes sent to the host this time
  std::optional<double> ready_seconds;
};

// Boots `request` on the host at `uri`; waits up to `wait_ready` for the
// guest's report when it is not zero. A failure removes what it made there.
Result<LibvirtBootOutcome> boot_through_libvirt(const std::string& uri, const BootRequest& request,
                                                std::chrono::seconds wait_ready, Reporter& reporter);

struct LibvirtInstance {
  std::string name, id, source, state;
  char state_letter = '-';
  uint64_t memory_mib = 0;
  int vcpus = 0;
  std::optional<double> ready_seconds;
};
Result<std::vector<LibvirtInstance>> list_libvirt_instances(const std::string& uri);

// xm's verbs on a libvirt instance: shutdown, reboot, pause, unpause, and
// destroy (which also undefines it and removes its volumes, but not the
// images other instances share).
Result<> libvirt_instance_verb(const std::string& uri, const std::string& name, const std::string& verb);
// `kiln console --connect`: the domain's serial console, through libvirt's
// console stream, as kiln's own `kiln console` shows it.
Result<> attach_libvirt_console(const std::string& uri, const std::string& name, bool interactive);

// xm save and restore through libvirt: the domain's memory to `file`, a
// path on the libvirt host (a relative one is this machine's, and only for
// a local URI), the domain stopping; and back. While saved the domain stays
// defined with its volumes (its disks as they were, which the file goes
// with), listed as saved; destroying it removes them, and the file cannot
// be restored after. Restore gives the instance's name.
Result<> save_libvirt_instance(const std::string& uri, const std::string& name, const std::string& file);
Result<std::string> restore_libvirt_instance(const std::string& uri, const std::string& file);

// Waits until the domain has stopped (shut off, or crashed), up to `timeout`.
Result<> wait_libvirt_stopped(const std::string& uri, const std::string& name, std::chrono::seconds timeout);

}  // namespace kiln
