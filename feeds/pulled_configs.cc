#include "feeds/pulled_configs.h"

#include <set>
#include <sstream>
#include <string>

#include <pugixml.hpp>

#include "base/files.h"
#include "base/hash.h"
#include "formats/domain/xen_config.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

// Points a pulled domain config at DIR instead of the publisher's output
// directory: every path whose file is one of the image's own files.
Result<std::string> relocate_xen_config(const std::string& text, const std::string& name, const fs::path& dir,
                                        const std::set<std::string>& files) {
  KILN_ASSIGN(DomainSpec spec, parse_xen_config(text, name));
  auto move = [&](std::string& path) {
    std::string file = fs::path(path).filename().string();
    if (!path.empty() && files.count(file)) path = (dir / file).string();
  };
  move(spec.kernel);
  move(spec.ramdisk);
  for (DomainDisk& disk : spec.disks) move(disk.path);
  return write_xen_config(spec);
}

Result<std::string> relocate_libvirt_xml(const std::string& text, const std::string& name, const fs::path& dir,
                                         const std::set<std::string>& files) {
  pugi::xml_document doc;
  if (!doc.load_buffer(text.data(), text.size(), pugi::parse_default | pugi::parse_declaration | pugi::parse_comments))
    return fail(ErrorKind::kUntrusted, "{}: not well-formed XML", name);
  auto move = [&](std::string_view path) -> std::optional<std::string> {
    std::string file = fs::path(path).filename().string();
    if (path.empty() || !files.count(file)) return std::nullopt;
    return (dir / file).string();
  };
  for (pugi::xpath_node found : doc.select_nodes("/domain/devices/disk/source[@file]")) {
    pugi::xml_attribute file = found.node().attribute("file");
    if (auto moved = move(file.value())) file.set_value(moved->c_str());
  }
  for (pugi::xpath_node found : doc.select_nodes("/domain/os/kernel | /domain/os/initrd")) {
    pugi::xml_node node = found.node();
    if (auto moved = move(node.text().get())) node.text().set(moved->c_str());
  }
  std::ostringstream out;
  doc.save(out, "  ", pugi::format_default | pugi::format_no_declaration);
  return out.str();
}

}  // namespace

Result<std::vector<UnpackedFile>> relocate_configs(std::vector<UnpackedFile> files, const fs::path& staging,
                                                   const fs::path& final_dir) {
  std::set<std::string> names;
  for (const UnpackedFile& file : files) names.insert(file.file);
  for (UnpackedFile& file : files) {
    bool xen = file.file.ends_with(".xl.cfg");
    bool libvirt = file.file.ends_with(".libvirt.xml");
    if (!xen && !libvirt) continue;
    fs::path path = staging / file.file;
    KILN_ASSIGN(std::string text, read_file(path));
    KILN_ASSIGN(std::string moved, xen ? relocate_xen_config(text, file.file, final_dir, names)
                                       : relocate_libvirt_xml(text, file.file, final_dir, names));
    KILN_TRY(write_file_atomic(path, moved));
    file.size = moved.size();
    file.sha256 = sha256_hex(moved);
  }
  return files;
}

}  // namespace kiln
