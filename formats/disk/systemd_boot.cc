#include "formats/disk/systemd_boot.h"

#include <cctype>
#include <system_error>

namespace kiln {
namespace {

namespace fs = std::filesystem;

Result<> check_entry(const BootEntry& entry) {
  if (entry.id.empty())
    return fail(ErrorKind::kBadInput, "a boot entry needs an id, such as 'debian'");
  for (char c : entry.id)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return fail(ErrorKind::kBadInput,
                  "boot entry id '{}' has the character '{}'; use letters, digits, '-', '_' and '.'",
                  entry.id, c);
  // Loader files are line based: a newline would start another setting.
  if (entry.title.find('\n') != std::string::npos)
    return fail(ErrorKind::kBadInput, "boot entry title '{}' must be one line", entry.title);
  if (entry.command_line.find('\n') != std::string::npos)
    return fail(ErrorKind::kBadInput, "kernel command line '{}' must be one line",
                entry.command_line);
  return {};
}

Result<> check_file(const fs::path& path, std::string_view what) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return {};
  return fail(ErrorKind::kBadInput, "{}: the {} for the boot entry {}", path.string(), what,
              ec || !fs::exists(path) ? "does not exist" : "is not a regular file");
}

std::string upper(std::string text) {
  for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text;
}

}  // namespace

std::string systemd_boot_path(std::string_view efi_suffix) {
  return fmt::format("/usr/lib/systemd/boot/efi/systemd-boot{}.efi", efi_suffix);
}

Result<std::vector<FatFile>> systemd_boot_files(const BootEntry& entry, const BootLoader& loader) {
  KILN_TRY(check_entry(entry));
  std::error_code ec;
  if (loader.content.empty() && !fs::is_regular_file(loader.file, ec))
    return fail(ErrorKind::kMissingTool,
                "{} not found: install the Debian package 'systemd-boot-efi' "
                "(apt-get install systemd-boot-efi), or run scripts/install-deps.sh",
                loader.file.string());
  KILN_TRY(check_file(entry.kernel, "kernel"));
  if (!entry.initrd.empty()) KILN_TRY(check_file(entry.initrd, "initrd"));

  std::string conf = fmt::format("{}.conf", entry.id);
  std::string loader_conf = fmt::format("timeout 0\ndefault {}\neditor no\n", conf);
  std::string boot_entry = fmt::format("title {}\nlinux /vmlinuz\n",
                                       entry.title.empty() ? entry.id : entry.title);
  if (!entry.initrd.empty()) boot_entry += "initrd /initrd.img\n";
  boot_entry += fmt::format("options {}\n", entry.command_line);

  std::vector<FatFile> files = {
      // The removable-media path firmware tries without any boot variable.
      {"EFI/BOOT/BOOT" + upper(loader.efi_suffix) + ".EFI", loader.file, loader.content},
      {"EFI/systemd/systemd-boot" + loader.efi_suffix + ".efi", loader.file, loader.content},
      {"loader/loader.conf", "", loader_conf},
      {"loader/entries/" + conf, "", boot_entry},
      {"vmlinuz", entry.kernel, ""},
  };
  if (!entry.initrd.empty()) files.push_back({"initrd.img", entry.initrd, ""});
  return files;
}

}  // namespace kiln
