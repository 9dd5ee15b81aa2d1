#include "formats/disk/lvm_layout.h"

#include <sched.h>
#include <unistd.h>

#include <charconv>

#include <nlohmann/json.hpp>

#include "base/files.h"
#include "base/subprocess.h"
#include "formats/disk/loop_device.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

constexpr auto kToolTimeout = std::chrono::minutes(2);
constexpr std::string_view kHostName = "kiln";

// The whole lvm2 configuration the tools see. Only our loop device passes
// the filters; every place lvm2 would write outside it (hints in /run/lvm,
// lock files in /run/lock/lvm, backups and archives in /etc/lvm, the
// devices file, D-Bus notifications, udev) is off or private. Data
// alignment is fixed, not probed, so every host lays volumes out alike.
std::string lvm_config(const std::string& device, const fs::path& dir) {
  return fmt::format(R"(# Written by kiln for one bake; the host's /etc/lvm is not read.
devices {{
	scan = [ "/dev" ]
	filter = [ "a|^{0}$|", "r|.*|" ]
	global_filter = [ "a|^{0}$|", "r|.*|" ]
	use_devicesfile = 0
	obtain_device_list_from_udev = 0
	external_device_info_source = "none"
	hints = "none"
	md_component_detection = 0
	multipath_component_detection = 0
	fw_raid_component_detection = 0
	data_alignment_detection = 0
	data_alignment_offset_detection = 0
	data_alignment = 1024
}}
global {{
	etc = "{1}"
	locking_dir = "{1}/lock"
	use_lvmlockd = 0
	event_activation = 0
	notify_dbus = 0
	system_id_source = "none"
}}
activation {{
	udev_sync = 0
	udev_rules = 0
	monitoring = 0
	verify_udev_operations = 0
}}
backup {{
	backup = 0
	archive = 0
	backup_dir = "{1}/backup"
	archive_dir = "{1}/archive"
}}
log {{
	syslog = 0
}}
)",
                     device, dir.string());
}

// Runs in the child: its own host name, so lvm2's "creation_host" does not
// carry the build host's name into the image.
bool private_host_name() {
  return ::unshare(CLONE_NEWUTS) == 0 && ::sethostname(kHostName.data(), kHostName.size()) == 0;
}

class LvmTools {
 public:
  static Result<LvmTools> prepare(const std::string& device, CommandRunner& runner) {
    KILN_ASSIGN(TempDir dir, TempDir::create(fs::temp_directory_path(), "kiln-lvm"));
    KILN_TRY(write_file_atomic(dir.path() / "lvm.conf", lvm_config(device, dir.path())));
    return LvmTools(runner, std::move(dir));
  }

  Result<std::string> run(std::vector<std::string> args) {
    Command command;
    command.argv = {"lvm"};
    command.argv.insert(command.argv.end(), args.begin(), args.end());
    command.env = {"LVM_SYSTEM_DIR=" + dir_.path().string(), "LVM_SUPPRESS_FD_WARNINGS=1", "LC_ALL=C"};
    command.timeout = kToolTimeout;
    command.in_child = private_host_name;
    auto done = runner_.run(command);
    if (!done)
      return std::unexpected(std::move(done).error().with_context(fmt::format("lvm {}", args.front())));
    return done->out;
  }

  // One lvm2 report (`lvm vgs|pvs|lvs ... --reportformat json`) as rows.
  Result<nlohmann::json> report(std::string_view kind, std::vector<std::string> args) {
    std::vector<std::string> argv = {std::string(kind), "--reportformat", "json", "--units", "b", "--nosuffix"};
    argv.insert(argv.end(), args.begin(), args.end());
    KILN_ASSIGN(std::string out, run(argv));
    try {
      nlohmann::json parsed = nlohmann::json::parse(out);
      return parsed.at("report").at(0).at(std::string(kind).substr(0, 2));
    } catch (const nlohmann::json::exception& e) {
      return fail(ErrorKind::kFailed, "lvm {}: unexpected report ({})", kind, e.what());
    }
  }

 private:
  LvmTools(CommandRunner& runner, TempDir dir) : runner_(runner), dir_(std::move(dir)) {}
  CommandRunner& runner_;
  TempDir dir_;
};

Result<uint64_t> number(const nlohmann::json& row, const char* field) {
  std::string text = row.value(field, "");
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size())
    return fail(ErrorKind::kFailed, "lvm2 reported {} = \"{}\", not a number", field, text);
  return value;
}

// "/dev/loop3:25-148" -> 25
Result<uint64_t> first_extent(const std::string& ranges) {
  auto colon = ranges.rfind(':');
  auto dash = ranges.find('-', colon == std::string::npos ? 0 : colon);
  uint64_t value = 0;
  if (colon == std::string::npos || dash == std::string::npos ||
      std::from_chars(ranges.data() + colon + 1, ranges.data() + dash, value).ec != std::errc())
    return fail(ErrorKind::kFailed, "lvm2 reported the extents \"{}\", which kiln cannot read", ranges);
  return value;
}

// The extent count of each volume, the "rest" one taking what is left.
Result<std::vector<uint64_t>> extent_counts(std::span<const LogicalVolumeRequest> volumes, uint64_t extent_size,
                                            uint64_t free_extents) {
  std::vector<uint64_t> counts;
  uint64_t used = 0;
  size_t rest = volumes.size();
  for (size_t i = 0; i < volumes.size(); ++i) {
    uint64_t count = (volumes[i].size + extent_size - 1) / extent_size;
    if (volumes[i].size == 0) rest = i;
    counts.push_back(count);
    used += count;
  }
  if (rest != volumes.size()) {
    if (used >= free_extents)
      return fail(ErrorKind::kNoSpace, "the logical volumes take {} of the volume group's {} extents of {} bytes, and "
                                       "leave none for \"{}\"",
                  used, free_extents, extent_size, volumes[rest].name);
    counts[rest] = free_extents - used;
  } else if (used > free_extents) {
    return fail(ErrorKind::kNoSpace, "the logical volumes need {} extents of {} bytes, but the volume group has {}",
                used, extent_size, free_extents);
  }
  return counts;
}

}  // namespace

Result<LvmLayout> write_lvm_layout(const fs::path& image, uint64_t offset, uint64_t size, std::string_view vg,
                                   uint64_t extent_size, std::span<const LogicalVolumeRequest> volumes) {
  if (::geteuid() != 0)
    return fail(ErrorKind::kMissingTool,
                "the lvm layout runs lvm2's tools on a loop device, which needs root: run kiln as root, or use "
                "storage.layout = \"gpt\"");
  KILN_ASSIGN(LoopDevice loop, LoopDevice::attach(image, offset, size));
  KILN_ASSIGN(LvmLayout layout, lay_out_volume_group(loop.path(), vg, extent_size, volumes, system_runner()));
  KILN_TRY(loop.detach());
  return layout;
}

Result<LvmLayout> lay_out_volume_group(const std::string& device, std::string_view vg, uint64_t extent_size,
                                       std::span<const LogicalVolumeRequest> volumes, CommandRunner& runner) {
  KILN_ASSIGN(LvmTools lvm, LvmTools::prepare(device, runner));
  std::string extent = fmt::format("{}b", extent_size);
  KILN_TRY(lvm.run({"pvcreate", "--yes", "--dataalignment", "1m", device}));
  KILN_TRY(lvm.run({"vgcreate", "--yes", "--physicalextentsize", extent, std::string(vg), device}));

  LvmLayout layout;
  layout.vg = vg;
  KILN_ASSIGN(nlohmann::json groups,
              lvm.report("vgs", {"-o", "vg_uuid,vg_extent_size,vg_extent_count,vg_free_count", std::string(vg)}));
  if (groups.size() != 1) return fail(ErrorKind::kFailed, "lvm vgs: no volume group {} after vgcreate", vg);
  layout.vg_uuid = groups[0].value("vg_uuid", "");
  KILN_ASSIGN(layout.extent_size, number(groups[0], "vg_extent_size"));
  KILN_ASSIGN(layout.extent_count, number(groups[0], "vg_extent_count"));
  KILN_ASSIGN(uint64_t free_extents, number(groups[0], "vg_free_count"));
  KILN_ASSIGN(nlohmann::json pvs, lvm.report("pvs", {"-o", "pv_uuid,pe_start", device}));
  if (pvs.size() != 1) return fail(ErrorKind::kFailed, "lvm pvs: no physical volume on {}", device);
  layout.pv_uuid = pvs[0].value("pv_uuid", "");
  KILN_ASSIGN(layout.pe_start, number(pvs[0], "pe_start"));

  KILN_ASSIGN(std::vector<uint64_t> counts, extent_counts(volumes, layout.extent_size, free_extents));
  for (size_t i = 0; i < volumes.size(); ++i)
    KILN_TRY(lvm.run({"lvcreate", "--driverloaded", "n", "--activate", "n", "--zero", "n", "--wipesignatures", "n",
                      "--yes", "--extents", std::to_string(counts[i]), "--name", volumes[i].name, std::string(vg)}));

  KILN_ASSIGN(nlohmann::json lvs,
              lvm.report("lvs", {"-o", "lv_name,lv_uuid,lv_size,seg_count,seg_pe_ranges", std::string(vg)}));
  for (const LogicalVolumeRequest& request : volumes) {
    const nlohmann::json* row = nullptr;
    for (const nlohmann::json& candidate : lvs)
      if (candidate.value("lv_name", "") == request.name) row = &candidate;
    if (!row) return fail(ErrorKind::kFailed, "lvm lvs: no logical volume {} after lvcreate", request.name);
    if (row->value("seg_count", "") != "1")
      return fail(ErrorKind::kFailed, "lvm2 split logical volume {} into {} pieces; kiln writes contiguous ones only",
                  request.name, row->value("seg_count", ""));
    PlacedLogicalVolume placed;
    placed.name = request.name;
    placed.uuid = row->value("lv_uuid", "");
    KILN_ASSIGN(placed.size, number(*row, "lv_size"));
    KILN_ASSIGN(uint64_t start, first_extent(row->value("seg_pe_ranges", "")));
    placed.offset = layout.pe_start + start * layout.extent_size;
    layout.volumes.push_back(std::move(placed));
  }
  return layout;
}

}  // namespace kiln
