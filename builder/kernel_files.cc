#include "builder/kernel_files.h"

#include <string.h>

#include <algorithm>
#include <vector>

#include "base/files.h"

namespace kiln {

Result<std::optional<KernelFiles>> find_kernel(Ext4Image& fs, std::string_view dir) {
  KILN_ASSIGN(auto found, fs.stat(dir));
  if (!found) return std::nullopt;
  KILN_ASSIGN(auto names, fs.list_directory(dir));
  std::vector<std::string> versions;
  for (const std::string& name : names)
    if (name.starts_with("vmlinuz-")) versions.push_back(name.substr(8));
  if (versions.empty()) return std::nullopt;
  std::sort(versions.begin(), versions.end(),
            [](const std::string& a, const std::string& b) { return ::strverscmp(a.c_str(), b.c_str()) < 0; });
  std::string prefix = dir == "/" ? "/" : std::string(dir) + "/";
  KernelFiles files{versions.back(), prefix + "vmlinuz-" + versions.back(), prefix + "initrd.img-" + versions.back()};
  KILN_ASSIGN(auto initrd, fs.stat(files.initrd));
  if (!initrd)
    return fail(ErrorKind::kBadInput, "the image has kernel {} but no {}: install initramfs-tools", files.version,
                files.initrd);
  return files;
}

Result<> extract_kernel(Ext4Image& fs, const KernelFiles& files, const std::filesystem::path& dir) {
  for (const auto& [inside, name] : {std::pair{files.kernel, "vmlinuz"}, std::pair{files.initrd, "initrd.img"}}) {
    KILN_ASSIGN(std::string content, fs.read_file(inside));
    KILN_TRY(write_file_atomic(dir / name, content, 0644));
  }
  return {};
}

}  // namespace kiln
