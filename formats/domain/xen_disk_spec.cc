#include "formats/domain/xen_disk_spec.h"

#include <algorithm>
#include <array>
#include <optional>

#include "formats/domain/comma_fields.h"

namespace kiln {
namespace {

constexpr std::string_view kExample = "'/srv/disk.raw,raw,xvda,rw' or 'phy:vg0/feisty,xvda1,w'";

// xm's "PREFIX:" on the target: how dom0 served it, and sometimes its format.
struct TargetPrefix {
  std::string_view prefix;
  DiskBackend backend;
  std::optional<DiskFormat> format;
};
// Longest first: "tap:aio:" before "aio:".
constexpr std::array kTargetPrefixes = {
    TargetPrefix{"tap:tapdisk:aio:", DiskBackend::kTapAio, DiskFormat::kRaw},
    TargetPrefix{"tapdisk:aio:", DiskBackend::kTapAio, DiskFormat::kRaw},
    TargetPrefix{"tap:qcow2:", DiskBackend::kTapAio, DiskFormat::kQcow2},
    TargetPrefix{"tap:aio:", DiskBackend::kTapAio, DiskFormat::kRaw},
    TargetPrefix{"qcow2:", DiskBackend::kFile, DiskFormat::kQcow2},
    TargetPrefix{"file:", DiskBackend::kFile, std::nullopt},
    TargetPrefix{"phy:", DiskBackend::kPhy, std::nullopt},
    TargetPrefix{"aio:", DiskBackend::kTapAio, DiskFormat::kRaw},
    TargetPrefix{"raw:", DiskBackend::kFile, DiskFormat::kRaw},
};
// Image formats Xen's blktap read that kiln does not.
constexpr std::array<std::string_view, 5> kForeignPrefixes = {"tap:qcow:", "tap:vhd:", "qcow:", "vhd:", "tap:"};

// Host-side hints: how dom0 does I/O, nothing the guest sees.
constexpr std::array<std::string_view, 5> kHostFlags = {"direct-io-safe", "discard", "no-discard", "trusted",
                                                        "untrusted"};

enum Slot { kTarget, kFormat, kVdev, kAccess, kSlotCount };
constexpr std::array<std::string_view, kSlotCount> kSlotNames = {"target", "format", "vdev", "access"};

class DiskSpecReader {
 public:
  DiskSpecReader(std::string_view spec, const Location& where) : spec_(spec), where_(where) {}

  Result<DomainDisk> read() {
    KILN_TRY(read_parameters());
    KILN_TRY(apply_target());
    KILN_TRY(apply_format());
    KILN_TRY(apply_vdev());
    KILN_TRY(apply_access());
    KILN_TRY(apply_backendtype());
    if (disk_.path.empty() && !disk_.cdrom)
      return error("no target: name the image or device, as in {}", kExample);
    return disk_;
  }

 private:
  template <typename... Args>
  std::unexpected<Error> error(fmt::format_string<Args...> format, Args&&... args) const {
    return fail_at(where_, "bad disk spec '{}': {}", spec_, fmt::format(format, std::forward<Args>(args)...));
  }

  Result<> read_parameters() {
    std::string_view rest = spec_;
    for (bool more = true; more;) {
      std::string_view field;
      if (trim(rest).starts_with("target=")) {
        field = trim(rest);  // target= takes the rest, commas included
        more = false;
      } else {
        size_t comma = rest.find(',');
        field = trim(rest.substr(0, comma));
        more = comma != std::string_view::npos;
        if (more) rest.remove_prefix(comma + 1);
      }
      KILN_TRY(read_parameter(field));
    }
    return {};
  }

  Result<> read_parameter(std::string_view field) {
    size_t equals = field.find('=');
    if (equals != std::string_view::npos) return read_keyword(trim(field.substr(0, equals)), trim(field.substr(equals + 1)));
    if (field == "cdrom") return set_devtype("cdrom");
    if (std::ranges::find(kHostFlags, field) != kHostFlags.end()) return {};
    return read_positional(field);
  }

  Result<> read_keyword(std::string_view key, std::string_view value) {
    for (int slot = 0; slot < kSlotCount; ++slot)
      if (key == kSlotNames[slot]) return set(static_cast<Slot>(slot), value);
    if (key == "devtype") return set_devtype(value);
    if (key == "backendtype") return set_once(backendtype_, "backendtype", value);
    if (key == "specification") {
      if (value != "xen" && value != "virtio") return error("bad specification '{}': expected xen or virtio", value);
      return {};
    }
    if (key == "backend")
      return error("backend={} serves the disk from a driver domain; kiln opens the target on this host: "
                   "remove backend=", value);
    if (key == "script")
      return error("script={} is a dom0 block script; kiln opens the target itself: name the image or device "
                   "as the target instead", value);
    if (key.starts_with("colo"))
      return error("{}= is COLO replication, which kiln does not do", key);
    return error("unknown parameter '{}': kiln reads target, format, vdev, access, devtype, backendtype and "
                 "specification (xl-disk-configuration(5))", key);
  }

  // Fills the next slot not yet given; an empty field takes its default.
  Result<> read_positional(std::string_view field) {
    while (next_slot_ < kSlotCount && given_[next_slot_]) ++next_slot_;
    if (next_slot_ == kSlotCount)
      return error("too many parameters at '{}': expected at most TARGET,FORMAT,VDEV,ACCESS, as in {}", field,
                   kExample);
    Slot slot = static_cast<Slot>(next_slot_++);
    KILN_TRY(set(slot, field));
    // xm's form: after a PREFIX:TARGET come the guest device and the mode.
    if (slot == kTarget && xm_prefix(field)) given_[kFormat] = true;
    return {};
  }

  Result<> set(Slot slot, std::string_view value) {
    if (given_[slot]) return error("{} is given twice", kSlotNames[slot]);
    given_[slot] = true;
    values_[slot] = std::string(value);
    return {};
  }

  Result<> set_once(std::optional<std::string>& field, std::string_view key, std::string_view value) {
    if (field) return error("{}= is given twice", key);
    field = std::string(value);
    return {};
  }

  Result<> set_devtype(std::string_view value) {
    if (value != "cdrom" && value != "disk") return error("bad devtype '{}': expected disk or cdrom", value);
    if (devtype_given_) return error("the device type (devtype= or cdrom) is given twice");
    devtype_given_ = true;
    disk_.cdrom = value == "cdrom";
    return {};
  }

  static const TargetPrefix* xm_prefix(std::string_view target) {
    for (const TargetPrefix& prefix : kTargetPrefixes)
      if (target.starts_with(prefix.prefix)) return &prefix;
    return nullptr;
  }

  Result<> apply_target() {
    std::string_view target = values_[kTarget];
    for (std::string_view foreign : kForeignPrefixes) {
      if (target.starts_with(foreign) && !xm_prefix(target))
        return error("'{}' images: kiln reads raw and qcow2 disks (convert with qemu-img convert -O qcow2)",
                     foreign.substr(0, foreign.size() - 1));
    }
    if (const TargetPrefix* prefix = xm_prefix(target)) {
      target.remove_prefix(prefix->prefix.size());
      disk_.backend = prefix->backend;
      if (prefix->format) disk_.format = *prefix->format;
      if (trim(target).empty()) return error("the path after {} is empty", prefix->prefix);
    }
    target = trim(target);
    // xm took "phy:vg0/feisty" to mean /dev/vg0/feisty.
    bool under_dev = disk_.backend == DiskBackend::kPhy && !target.empty() && !target.starts_with('/');
    disk_.path = under_dev ? "/dev/" + std::string(target) : std::string(target);
    return {};
  }

  Result<> apply_format() {
    const std::string& format = values_[kFormat];
    if (format.empty()) return {};
    if (format == "qcow2") disk_.format = DiskFormat::kQcow2;
    else if (format == "raw") disk_.format = DiskFormat::kRaw;
    else if (format == "qcow" || format == "vhd" || format == "qed")
      return error("format {}: kiln reads raw and qcow2 disks (convert with qemu-img convert -O qcow2)", format);
    else return error("bad format '{}': expected raw or qcow2", format);
    return {};
  }

  Result<> apply_vdev() {
    std::string_view vdev = values_[kVdev];
    if (vdev.empty()) return error("no guest device (vdev): write it as in {}", kExample);
    // "ioemu:hda" in HVM-era configs asked for an emulated disk: still hda.
    if (vdev.starts_with("ioemu:")) vdev.remove_prefix(6);
    for (std::string_view suffix : {":cdrom", ":disk"}) {
      if (!vdev.ends_with(suffix)) continue;
      vdev.remove_suffix(suffix.size());
      KILN_TRY(set_devtype(suffix.substr(1)));
    }
    if (!is_xen_frontend(vdev))
      return error("bad guest device '{}': expected sdX, hdX or xvdX with an optional partition number, e.g. xvda1",
                   values_[kVdev]);
    disk_.frontend = std::string(vdev);
    return {};
  }

  Result<> apply_access() {
    const std::string& access = values_[kAccess];
    if (!access.empty() && access != "r" && access != "ro" && access != "w" && access != "rw" && access != "w!")
      return error("bad access '{}': expected r, ro, w or rw", access);
    disk_.read_only = access == "r" || access == "ro";
    if (disk_.cdrom) {
      if (!access.empty() && !disk_.read_only) return error("a cdrom is read-only: access={} cannot apply", access);
      disk_.read_only = true;
    }
    return {};
  }

  Result<> apply_backendtype() {
    if (!backendtype_) return {};
    if (*backendtype_ == "phy") disk_.backend = DiskBackend::kPhy;
    else if (*backendtype_ == "tap") disk_.backend = DiskBackend::kTapAio;
    else if (*backendtype_ == "qdisk") disk_.backend = DiskBackend::kFile;
    else return error("bad backendtype '{}': expected phy, tap or qdisk", *backendtype_);
    if (disk_.backend == DiskBackend::kPhy && !disk_.path.empty() && !disk_.path.starts_with('/'))
      disk_.path = "/dev/" + disk_.path;
    return {};
  }

  std::string_view spec_;
  Location where_;
  DomainDisk disk_;
  std::array<std::string, kSlotCount> values_;
  std::array<bool, kSlotCount> given_{};
  int next_slot_ = 0;
  std::optional<std::string> backendtype_;
  bool devtype_given_ = false;
};

std::string_view backend_prefix(DiskBackend backend) {
  switch (backend) {
    case DiskBackend::kFile: return "file:";
    case DiskBackend::kTapAio: return "tap:aio:";
    case DiskBackend::kPhy: return "phy:";
  }
  return "file:";
}

}  // namespace

Result<DomainDisk> parse_xen_disk_spec(std::string_view spec, const Location& where) {
  KILN_ASSIGN(DomainDisk disk, DiskSpecReader(trim(spec), where).read());
  disk.where = where;
  return disk;
}

std::string write_xen_disk_spec(const DomainDisk& disk) {
  if (disk.format == DiskFormat::kRaw && !disk.cdrom && !disk.path.empty() &&
      disk.path.find(',') == std::string::npos)
    return fmt::format("{}{},{},{}", backend_prefix(disk.backend), disk.path, disk.frontend,
                       disk.read_only ? "r" : "w");
  std::string spec = fmt::format("format={}, vdev={}, access={}", disk.format == DiskFormat::kQcow2 ? "qcow2" : "raw",
                                 disk.frontend, disk.read_only ? "ro" : "rw");
  if (disk.cdrom) spec += ", devtype=cdrom";
  if (disk.backend == DiskBackend::kPhy) spec += ", backendtype=phy";
  if (disk.backend == DiskBackend::kTapAio) spec += ", backendtype=tap";
  if (disk.path.empty()) return spec;
  return spec + ", target=" + disk.path;
}

}  // namespace kiln
