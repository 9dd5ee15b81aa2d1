#include "builder/host_target.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/files.h"
#include "base/interrupt.h"
#include "base/size.h"
#include "base/subprocess.h"
#include "recipes/value_checks.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kChunk = 4 * kMiB;
constexpr auto kLvmTimeout = std::chrono::minutes(2);
// How long a new logical volume's device node may take to appear (udev).
constexpr auto kDeviceWait = std::chrono::seconds(10);

std::unexpected<Error> bad_target(std::string_view spec, std::string message) {
  return fail(ErrorKind::kBadInput, "--target {}: {}", spec, message);
}

std::unexpected<Error> no_device_mapper(std::string_view spec) {
  return fail(ErrorKind::kMissingTool,
              "--target {}: this host has no device-mapper (the dm-mod kernel module is not loaded: /proc/misc has no "
              "'device-mapper'), so its logical volumes can be neither created nor opened. Load it with "
              "`modprobe dm-mod` as root, on a kernel that has it; or bake to a file with -o DIR and copy DIR/disk.raw "
              "onto the volume on a host that has device-mapper (dd if=DIR/disk.raw of=/dev/VG/LV bs=4M "
              "conv=sparse,fsync)",
              spec);
}

Command lvm_command(std::vector<std::string> args) {
  Command command;
  command.argv = {"lvm"};
  command.argv.insert(command.argv.end(), args.begin(), args.end());
  command.env = {"LVM_SUPPRESS_FD_WARNINGS=1", "LC_ALL=C"};
  command.timeout = kLvmTimeout;
  return command;
}

// The report lvm prints, or "" when what it reports on does not exist
// (exit 5).
Result<std::string> lvm_report(CommandRunner& runner, std::vector<std::string> args) {
  Command command = lvm_command(std::move(args));
  command.ok_exit_codes = {5};
  KILN_ASSIGN(Completed done, runner.run(command));
  if (done.exit_code != 0) return std::string();
  return done.out;
}

uint64_t number_at(const nlohmann::json& row, const char* field) {
  std::string text = row.value(field, "0");
  uint64_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

// The single row of an lvm2 JSON report, or null when there is none.
std::optional<nlohmann::json> report_row(const std::string& out, const char* kind) {
  if (out.empty()) return std::nullopt;
  auto parsed = nlohmann::json::parse(out, nullptr, false);
  if (parsed.is_discarded()) return std::nullopt;
  const auto& rows = parsed["report"][0][kind];
  if (!rows.is_array() || rows.size() != 1) return std::nullopt;
  return rows[0];
}

// "/dev/sdb holds 1.0 GiB, but the image needs 2.0 GiB (storage.size)".
std::unexpected<Error> too_small(std::string_view spec, uint64_t size, uint64_t needed) {
  return fail(ErrorKind::kNoSpace,
              "--target {}: the device holds {} ({} bytes), but the image needs {} ({} bytes, storage.size); use a "
              "device of at least that size, or lower storage.size",
              spec, format_size(size), size, format_size(needed), needed);
}

// The "MAJ:MIN" of the device and of each of its partitions.
std::vector<std::string> device_numbers(dev_t device) {
  std::vector<std::string> out = {fmt::format("{}:{}", major(device), minor(device))};
  fs::path sys = fmt::format("/sys/dev/block/{}:{}", major(device), minor(device));
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(sys, ec)) {
    if (!fs::exists(entry.path() / "partition", ec)) continue;
    std::string number = read_file(entry.path() / "dev").value_or("");
    if (!number.empty()) out.push_back(number.substr(0, number.find('\n')));
  }
  return out;
}

// Where the device (or a partition of it) is mounted, or "".
std::string mounted_at(dev_t device) {
  std::string mountinfo = read_file("/proc/self/mountinfo").value_or("");
  std::vector<std::string> numbers = device_numbers(device);
  size_t start = 0;
  while (start < mountinfo.size()) {
    size_t end = mountinfo.find('\n', start);
    if (end == std::string::npos) end = mountinfo.size();
    std::string_view line(mountinfo.data() + start, end - start);
    // mount ID, parent ID, MAJ:MIN, root, mount point, ...
    std::vector<std::string_view> fields;
    size_t at = 0;
    while (at < line.size() && fields.size() < 5) {
      size_t space = line.find(' ', at);
      if (space == std::string_view::npos) space = line.size();
      fields.push_back(line.substr(at, space - at));
      at = space + 1;
    }
    if (fields.size() == 5)
      for (const std::string& number : numbers)
        if (fields[2] == number) return std::string(fields[4]);
    start = end + 1;
  }
  return {};
}

// What holds the device: device-mapper or md devices stacked on it.
std::string holders_of(dev_t device) {
  std::string out;
  std::error_code ec;
  for (const auto& entry :
       fs::directory_iterator(fmt::format("/sys/dev/block/{}:{}/holders", major(device), minor(device)), ec))
    out += (out.empty() ? "" : ", ") + entry.path().filename().string();
  return out;
}

bool used_as_swap(const fs::path& device) {
  std::string swaps = read_file("/proc/swaps").value_or("");
  std::error_code ec;
  fs::path real = fs::canonical(device, ec);
  return swaps.find(real.string() + " ") != std::string::npos || swaps.find(real.string() + "\t") != std::string::npos;
}

Result<uint64_t> check_block_device(std::string_view spec, const fs::path& device, uint64_t needed) {
  struct stat st;
  if (::stat(device.c_str(), &st) != 0) return bad_target(spec, fmt::format("{}: {}", device.string(), std::strerror(errno)));
  if (!S_ISBLK(st.st_mode))
    return bad_target(spec, fmt::format("{} is not a block device; to write an image file, use -o DIR", device.string()));
  if (std::string where = mounted_at(st.st_rdev); !where.empty())
    return bad_target(spec, fmt::format("{} is mounted (at {}); unmount it first", device.string(), where));
  if (used_as_swap(device)) return bad_target(spec, fmt::format("{} is in use as swap; swapoff it first", device.string()));
  if (std::string holders = holders_of(st.st_rdev); !holders.empty())
    return bad_target(spec, fmt::format("{} is in use by {} (device-mapper or md on top of it)", device.string(), holders));
  UniqueFd fd(::open(device.c_str(), O_RDONLY | O_EXCL | O_CLOEXEC));
  if (!fd) {
    if (errno == EBUSY) return bad_target(spec, fmt::format("{} is in use by another program", device.string()));
    return fail_errno("cannot open", device.string(), errno);
  }
  uint64_t size = 0;
  if (::ioctl(fd.get(), BLKGETSIZE64, &size) != 0) return fail_errno("cannot get the size of", device.string(), errno);
  if (size < needed) return too_small(spec, size, needed);
  return size;
}

Result<HostTarget> check_lvm_target(std::string_view spec, uint64_t needed, const TargetHost& host) {
  std::string_view name = spec.substr(4);
  auto slash = name.find('/');
  if (slash == std::string_view::npos) return bad_target(spec, "expected lvm:VG/LV, e.g. lvm:vg0/web1");
  HostTarget target{std::string(spec), {}, std::string(name.substr(0, slash)), std::string(name.substr(slash + 1)),
                    false, needed};
  for (const std::string* part : {&target.vg, &target.lv}) {
    std::string problem = check_lvm_name(*part);
    if (!problem.empty()) return bad_target(spec, fmt::format("\"{}\": {}", *part, problem));
  }
  if (!host.device_mapper) return no_device_mapper(spec);
  std::vector<std::string> report = {"--reportformat", "json", "--units", "b", "--nosuffix"};
  std::vector<std::string> lvs = {"lvs", "-o", "lv_path,lv_size", target.vg + "/" + target.lv};
  lvs.insert(lvs.end(), report.begin(), report.end());
  KILN_ASSIGN(std::string out, lvm_report(host.runner, lvs));
  if (auto row = report_row(out, "lv")) {
    target.device = row->value("lv_path", "");
    uint64_t size = number_at(*row, "lv_size");
    if (size < needed) return too_small(spec, size, needed);
    KILN_TRY(check_block_device(spec, target.device, needed));
    return target;
  }
  std::vector<std::string> vgs = {"vgs", "-o", "vg_free", target.vg};
  vgs.insert(vgs.end(), report.begin(), report.end());
  KILN_ASSIGN(std::string groups, lvm_report(host.runner, vgs));
  auto group = report_row(groups, "vg");
  if (!group) return bad_target(spec, fmt::format("this host has no volume group {} (see `vgs`)", target.vg));
  uint64_t free_bytes = number_at(*group, "vg_free");
  if (free_bytes < needed)
    return fail(ErrorKind::kNoSpace,
                "--target {}: volume group {} has {} free, but a new volume {} for the image needs {} (storage.size)",
                spec, target.vg, format_size(free_bytes), target.lv, format_size(needed));
  target.create_lv = true;
  target.device = fs::path("/dev") / target.vg / target.lv;
  return target;
}

// Copies the image onto the device: data as it is, holes as zeros (the
// device's old content must not show through where the image reads zero).
Result<> copy_to_device(const fs::path& image, const fs::path& device, Reporter& reporter) {
  KILN_ASSIGN(UniqueFd source, open_file(image, O_RDONLY | O_CLOEXEC));
  UniqueFd target(::open(device.c_str(), O_WRONLY | O_EXCL | O_CLOEXEC));
  if (!target) return fail_errno("cannot open for writing", device.string(), errno);
  struct stat st;
  if (::fstat(source.get(), &st) != 0) return fail_errno("cannot stat", image.string(), errno);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  std::vector<char> buffer(kChunk);
  std::vector<char> zeros;
  uint64_t at = 0;
  while (at < size) {
    KILN_TRY(check_interrupted());
    off_t data = ::lseek(source.get(), static_cast<off_t>(at), SEEK_DATA);
    uint64_t data_start = data < 0 ? size : static_cast<uint64_t>(data);
    if (data_start > at) {
      uint64_t range[2] = {at, data_start - at};
      if (::ioctl(target.get(), BLKZEROOUT, range) != 0) {
        // Devices without zeroing support get written zeros.
        zeros.resize(kChunk);
        for (uint64_t z = at; z < data_start; z += kChunk)
          KILN_TRY(pwrite_all(target.get(), zeros.data(), std::min<uint64_t>(kChunk, data_start - z), z, device.string()));
      }
      at = data_start;
      reporter.progress(at, size);
      continue;
    }
    off_t hole = ::lseek(source.get(), static_cast<off_t>(at), SEEK_HOLE);
    uint64_t data_end = hole < 0 ? size : std::min<uint64_t>(static_cast<uint64_t>(hole), size);
    while (at < data_end) {
      size_t length = static_cast<size_t>(std::min<uint64_t>(kChunk, data_end - at));
      ssize_t n = ::pread(source.get(), buffer.data(), length, static_cast<off_t>(at));
      if (n <= 0) return fail_errno("cannot read", image.string(), n < 0 ? errno : EIO);
      KILN_TRY(pwrite_all(target.get(), buffer.data(), static_cast<size_t>(n), at, device.string()));
      at += static_cast<uint64_t>(n);
      reporter.progress(at, size);
    }
  }
  if (::fsync(target.get()) != 0) return fail_errno("cannot flush", device.string(), errno);
  return {};
}

}  // namespace

bool host_has_device_mapper() {
  // Device-mapper registers a misc device when its module is loaded; without
  // it no logical volume can be activated, created or opened.
  std::string misc = read_file("/proc/misc").value_or("");
  return misc.find(" device-mapper\n") != std::string::npos;
}

TargetHost TargetHost::real() { return {system_runner(), host_has_device_mapper()}; }

Result<HostTarget> check_host_target(std::string_view spec, uint64_t needed, const TargetHost& host) {
  if (spec.starts_with("lvm:")) return check_lvm_target(spec, needed, host);
  if (!spec.starts_with("/dev/"))
    return bad_target(spec, "expected lvm:VG/LV or a block device under /dev; to write an image file, use -o DIR");
  HostTarget target{std::string(spec), fs::path(spec), {}, {}, false, needed};
  KILN_TRY(check_block_device(spec, target.device, needed));
  return target;
}

Result<fs::path> write_host_target(HostTarget& target, const fs::path& image, bool gpt, Reporter& reporter,
                                   CommandRunner& runner) {
  if (target.create_lv) {
    reporter.note(fmt::format("lvcreate {}/{} ({})", target.vg, target.lv, format_size(target.needed)));
    Command command = lvm_command(
        {"lvcreate", "--yes", "--size", fmt::format("{}b", target.needed), "--name", target.lv, target.vg});
    if (auto done = runner.run(command); !done)
      return std::unexpected(std::move(done).error().with_context("--target " + target.spec));
    auto deadline = std::chrono::steady_clock::now() + kDeviceWait;
    while (!fs::exists(target.device) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    target.create_lv = false;
  }
  // Checked again: the device may have changed while the image baked.
  KILN_ASSIGN(uint64_t size, check_block_device(target.spec, target.device, target.needed));
  reporter.note(fmt::format("writing {} onto {}", image.filename().string(), target.device.string()));
  KILN_TRY(copy_to_device(image, target.device, reporter));
  if (gpt && size > target.needed) {
    // The backup table belongs at the device's last sectors.
    Command command;
    command.argv = {"sfdisk", "--relocate", "gpt-bak-std", target.device.string()};
    command.env = {"LC_ALL=C"};
    if (auto done = runner.run(command); !done)
      return std::unexpected(std::move(done).error().with_context("--target " + target.spec));
  }
  return target.device;
}

}  // namespace kiln
