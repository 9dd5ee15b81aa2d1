#include "builder/systemd_units.h"

#include <array>
#include <set>
#include <sstream>
#include <vector>

#include "builder/offline_customizer.h"

namespace kiln {
namespace {

constexpr std::array<std::string_view, 3> kUnitDirs = {"/etc/systemd/system", "/usr/lib/systemd/system",
                                                       "/lib/systemd/system"};

struct InstallSection {
  std::vector<std::string> wanted_by;
  std::vector<std::string> required_by;
  std::vector<std::string> aliases;
  std::vector<std::string> also;
};

InstallSection parse_install(std::string_view text) {
  InstallSection install;
  std::istringstream in{std::string(text)};
  bool inside = false;
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with('[')) {
      inside = line.starts_with("[Install]");
      continue;
    }
    auto eq = line.find('=');
    if (!inside || eq == std::string::npos) continue;
    std::string key = line.substr(0, eq);
    std::istringstream values(line.substr(eq + 1));
    std::vector<std::string>* target = key == "WantedBy"     ? &install.wanted_by
                                       : key == "RequiredBy" ? &install.required_by
                                       : key == "Alias"      ? &install.aliases
                                       : key == "Also"       ? &install.also
                                                             : nullptr;
    if (!target) continue;
    for (std::string value; values >> value;) target->push_back(value);
  }
  return install;
}

Result<> link(Ext4Image& fs, const std::string& path, const std::string& target, int64_t mtime) {
  KILN_ASSIGN(auto existing, fs.stat(path));
  if (existing) KILN_TRY(fs.remove(path));
  KILN_TRY(make_parents(fs, path, mtime));
  return fs.make_symlink(path, target, Ext4Attributes{0777, 0, 0, mtime});
}

Result<> enable(Ext4Image& fs, std::string_view unit, int64_t mtime, std::set<std::string>& done) {
  if (!done.insert(std::string(unit)).second) return {};
  KILN_ASSIGN(std::string path, find_unit(fs, unit));
  if (path.empty()) return fail(ErrorKind::kFailed, "cannot enable {}: no such unit in the image", unit);
  KILN_ASSIGN(std::string text, fs.read_file(path));
  InstallSection install = parse_install(text);
  for (const auto& target : install.wanted_by)
    KILN_TRY(link(fs, fmt::format("/etc/systemd/system/{}.wants/{}", target, unit), path, mtime));
  for (const auto& target : install.required_by)
    KILN_TRY(link(fs, fmt::format("/etc/systemd/system/{}.requires/{}", target, unit), path, mtime));
  for (const auto& alias : install.aliases)
    KILN_TRY(link(fs, fmt::format("/etc/systemd/system/{}", alias), path, mtime));
  for (const auto& other : install.also) KILN_TRY(enable(fs, other, mtime, done));
  return {};
}

}  // namespace

Result<std::string> find_unit(Ext4Image& fs, std::string_view unit) {
  for (std::string_view dir : kUnitDirs) {
    std::string path = fmt::format("{}/{}", dir, unit);
    KILN_ASSIGN(auto st, fs.stat(path));
    if (st && st->type == EntryType::kFile) return path;
  }
  return std::string();
}

Result<> enable_unit(Ext4Image& fs, std::string_view unit, int64_t mtime) {
  std::set<std::string> done;
  return enable(fs, unit, mtime, done);
}

Result<> install_unit(Ext4Image& fs, std::string_view unit, std::string_view text, int64_t mtime) {
  std::string path = fmt::format("/etc/systemd/system/{}", unit);
  KILN_TRY(make_parents(fs, path, mtime));
  KILN_TRY(fs.write_file(path, text, Ext4Attributes{0644, 0, 0, mtime}));
  return enable_unit(fs, unit, mtime);
}

}  // namespace kiln
