#include "formats/domain/pygrub.h"

#include <string.h>
#include <sys/stat.h>

#include <algorithm>
#include <memory>
#include <span>

#include "base/files.h"
#include "formats/disk/partition_table.h"
#include "formats/domain/comma_fields.h"
#include "formats/ext4/ext4_image.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// Menus

// Splits a GRUB line into words; quotes group and are removed.
std::vector<std::string> grub_words(std::string_view line) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  char quote = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quote) {
      if (c == quote) quote = 0;
      else if (c == '\\' && quote == '"' && i + 1 < line.size()) word += line[++i];
      else word += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
    } else if (c == '\\' && i + 1 < line.size()) {
      word += line[++i];
      in_word = true;
    } else if (c == ' ' || c == '\t') {
      if (in_word) words.push_back(std::exchange(word, {}));
      in_word = false;
    } else {
      word += c;
      in_word = true;
    }
  }
  if (in_word) words.push_back(word);
  return words;
}

// "(hd0,msdos1)/boot/vmlinuz" and "($root)/vmlinuz" are paths in the
// filesystem GRUB booted from: the one that holds the menu.
std::string grub_path(std::string_view path) {
  if (path.starts_with('(')) {
    size_t close = path.find(')');
    path.remove_prefix(close == std::string_view::npos ? path.size() : close + 1);
  }
  std::string out(path);
  if (!out.starts_with('/')) out.insert(0, "/");
  return out;
}

std::string joined_from(const std::vector<std::string>& words, size_t first) {
  std::string out;
  for (size_t i = first; i < words.size(); ++i) out += (out.empty() ? "" : " ") + words[i];
  return out;
}

struct OpenBlock {
  enum Kind { kEntry, kSubmenu, kOther } kind;
  int line;
  std::string title;
};

}  // namespace

Result<BootMenu> parse_grub_cfg(std::string_view text, std::string_view file) {
  BootMenu menu;
  std::vector<OpenBlock> blocks;
  std::vector<int> counters = {0};  // items seen at each menu level
  std::vector<int> submenu_path;    // the index of each open submenu
  std::optional<BootMenuEntry> entry;
  int number = 0;
  for (std::string_view rest = text; !rest.empty();) {
    size_t newline = rest.find('\n');
    std::string_view line = trim(rest.substr(0, newline));
    rest.remove_prefix(newline == std::string_view::npos ? rest.size() : newline + 1);
    ++number;
    if (line.empty() || line.starts_with('#')) continue;
    std::vector<std::string> words = grub_words(line);
    if (words.empty()) continue;
    const std::string& verb = words[0];
    bool opens = line.ends_with('{');
    if (verb == "menuentry" || verb == "submenu") {
      if (words.size() < 2 || !opens)
        return fail_at({std::string(file), number}, "{} without a title and a '{{' on its line", verb);
      std::string title = words[1];
      std::vector<int> position = submenu_path;
      position.push_back(counters.back()++);
      if (verb == "submenu") {
        blocks.push_back({OpenBlock::kSubmenu, number, title});
        submenu_path.push_back(position.back());
        counters.push_back(0);
      } else {
        blocks.push_back({OpenBlock::kEntry, number, title});
        entry = BootMenuEntry{title, "", "", "", position};
      }
      continue;
    }
    if (line == "}" || line.starts_with("}")) {
      if (blocks.empty()) return fail_at({std::string(file), number}, "'}}' closes no block");
      OpenBlock block = blocks.back();
      blocks.pop_back();
      if (block.kind == OpenBlock::kSubmenu) {
        counters.pop_back();
        submenu_path.pop_back();
      }
      if (block.kind == OpenBlock::kEntry && entry) menu.entries.push_back(*std::exchange(entry, std::nullopt));
      continue;
    }
    if (opens) {
      blocks.push_back({OpenBlock::kOther, number, ""});  // function NAME {
      continue;
    }
    if (entry && words.size() >= 2 && (verb == "linux" || verb == "linux16" || verb == "linuxefi")) {
      entry->kernel = grub_path(words[1]);
      entry->args = joined_from(words, 2);
    } else if (entry && words.size() >= 2 && (verb == "initrd" || verb == "initrd16" || verb == "initrdefi")) {
      entry->initrd = grub_path(words[1]);
    } else if (!entry && verb == "set" && words.size() >= 2 && words[1].starts_with("default=")) {
      menu.default_entry = words[1].substr(8);
    }
  }
  if (!blocks.empty())
    return fail_at({std::string(file), blocks.back().line}, "this block is never closed: a '}}' is missing");
  return menu;
}

Result<BootMenu> parse_menu_lst(std::string_view text, std::string_view file) {
  BootMenu menu;
  int number = 0;
  for (std::string_view rest = text; !rest.empty();) {
    size_t newline = rest.find('\n');
    std::string_view line = trim(rest.substr(0, newline));
    rest.remove_prefix(newline == std::string_view::npos ? rest.size() : newline + 1);
    ++number;
    if (line.empty() || line.starts_with('#')) continue;
    // GRUB legacy also took "key=value" and tabs after the keyword.
    size_t split = line.find_first_of(" \t=");
    std::string_view key = line.substr(0, split);
    std::string_view value = split == std::string_view::npos ? "" : trim(line.substr(split + 1));
    if (key == "title") {
      int index = static_cast<int>(menu.entries.size());
      menu.entries.push_back({std::string(value), "", "", "", {index}});
    } else if (key == "default") {
      menu.default_entry = std::string(value);
    } else if ((key == "kernel" || key == "initrd") && !menu.entries.empty()) {
      std::vector<std::string> words = grub_words(value);
      if (words.empty()) return fail_at({std::string(file), number}, "{} without a path", key);
      if (key == "kernel") {
        menu.entries.back().kernel = grub_path(words[0]);
        menu.entries.back().args = joined_from(words, 1);
      } else {
        menu.entries.back().initrd = grub_path(words[0]);
      }
    }
  }
  return menu;
}

namespace {

bool all_digits(std::string_view text) {
  return !text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos;
}

// A default or --entry as pygrub reads it: a number is an index into every
// entry in file order (submenus flattened), anything else a title, of which
// only the part after the last '>' counts. GRUB's own "1>2" (the third entry
// of the second item), which pygrub cannot follow, is read as GRUB does.
const BootMenuEntry* entry_by_choice(const BootMenu& menu, std::string choice) {
  if (choice == "saved" || choice == "${saved_entry}" || choice == "${next_entry}") choice = "0";
  if (all_digits(choice)) {
    size_t index = std::stoul(choice);
    return index < menu.entries.size() ? &menu.entries[index] : nullptr;
  }
  std::string position;
  for (const BootMenuEntry& entry : menu.entries) {
    position.clear();
    for (int index : entry.position) position += (position.empty() ? "" : ">") + std::to_string(index);
    if (position == choice) return &entry;
  }
  std::string leaf = choice.substr(choice.rfind('>') == std::string::npos ? 0 : choice.rfind('>') + 1);
  for (const BootMenuEntry& entry : menu.entries)
    if (entry.title == leaf || entry.title == choice) return &entry;
  return nullptr;
}

}  // namespace

Result<const BootMenuEntry*> choose_boot_entry(const BootMenu& menu, const BootLoaderArgs& args,
                                               std::string_view file) {
  if (menu.entries.empty()) return fail(ErrorKind::kBadInput, "{}: no menu entry", file);
  const BootMenuEntry* entry = nullptr;
  if (args.entry) {
    entry = entry_by_choice(menu, *args.entry);
    if (!entry) {
      std::string titles;
      for (size_t i = 0; i < menu.entries.size(); ++i)
        titles += fmt::format("{}  {}: '{}'", titles.empty() ? "" : "\n", i, menu.entries[i].title);
      return fail(ErrorKind::kBadInput, "{}: --entry={} is none of its entries:\n{}", file, *args.entry, titles);
    }
  } else {
    // A default that names no entry boots the first, as GRUB and pygrub do.
    entry = entry_by_choice(menu, menu.default_entry);
    if (!entry) entry = &menu.entries.front();
  }
  if (entry->kernel.empty())
    return fail(ErrorKind::kBadInput, "{}: entry '{}' has no kernel (no linux or kernel line)", file, entry->title);
  return entry;
}

Result<BootLoaderArgs> parse_bootloader_args(const std::vector<std::string>& words, const Location& where) {
  BootLoaderArgs args;
  for (const std::string& word : words) {
    if (word == "-q" || word == "--quiet" || word == "-i" || word == "--interactive" || word == "-n" ||
        word == "--not-really")
      continue;
    size_t equals = word.find('=');
    std::string key = word.substr(0, equals);
    std::string value = equals == std::string::npos ? "" : word.substr(equals + 1);
    if (equals == std::string::npos && key.starts_with("--"))
      return fail_at(where, "bootloader_args: {} needs a value ({}=...)", key, key);
    if (key == "--entry") args.entry = value;
    else if (key == "--kernel") args.kernel = value;
    else if (key == "--ramdisk") args.ramdisk = value;
    else if (key == "--args") args.args = value;
    else
      return fail_at(where, "bootloader_args: unknown option '{}': kiln reads pygrub's --entry, --kernel, "
                     "--ramdisk and --args", word);
  }
  if (!args.ramdisk.empty() && args.kernel.empty())
    return fail_at(where, "bootloader_args: --ramdisk needs --kernel");
  return args;
}

// ---------------------------------------------------------------------------
// Disks

namespace {

struct Candidate {
  int partition;
  uint64_t offset;
};

// The bare filesystem, or each partition in order.
std::vector<Candidate> candidates(const fs::path& disk) {
  auto table = read_partition_table(disk);
  if (!table || table->label.empty()) return {{0, 0}};
  std::vector<Candidate> out;
  for (const TablePartition& partition : table->partitions) out.push_back({partition.number, partition.offset});
  return out;
}

constexpr std::string_view kGrubCfgs[] = {"/boot/grub/grub.cfg", "/boot/grub2/grub.cfg", "/grub/grub.cfg",
                                          "/grub2/grub.cfg"};
constexpr std::string_view kMenuLsts[] = {"/boot/grub/menu.lst", "/grub/menu.lst", "/boot/grub/grub.conf",
                                          "/grub/grub.conf"};

bool exists(Ext4Image& image, std::string_view path) {
  auto stat = image.stat(path);
  return stat && stat->has_value();
}

// The menu's entry in this filesystem, if it has a menu.
Result<std::optional<GuestBootFiles>> from_menu(Ext4Image& image, const BootLoaderArgs& args) {
  for (bool legacy : {false, true}) {
    for (std::string_view path : legacy ? std::span(kMenuLsts) : std::span(kGrubCfgs)) {
      if (!exists(image, path)) continue;
      KILN_ASSIGN(std::string text, image.read_file(path));
      KILN_ASSIGN(BootMenu menu, legacy ? parse_menu_lst(text, path) : parse_grub_cfg(text, path));
      KILN_ASSIGN(const BootMenuEntry* entry, choose_boot_entry(menu, args, path));
      GuestBootFiles found;
      found.kernel = entry->kernel;
      found.initrd = entry->initrd;
      found.command_line = entry->args;
      found.found_in = fmt::format("{}, entry '{}'", path, entry->title);
      return found;
    }
  }
  return std::nullopt;
}

// pygrub's fallback: the newest /boot/vmlinuz-VERSION, its initrd beside it.
std::optional<GuestBootFiles> newest_kernel(Ext4Image& image) {
  auto names = image.list_directory("/boot");
  if (!names) return std::nullopt;
  std::string newest;
  for (const std::string& name : *names) {
    if (!name.starts_with("vmlinuz-")) continue;
    if (newest.empty() || strverscmp(name.c_str(), newest.c_str()) > 0) newest = name;
  }
  if (newest.empty()) return std::nullopt;
  std::string version = newest.substr(8);
  GuestBootFiles found;
  found.kernel = "/boot/" + newest;
  for (std::string initrd : {"/boot/initrd.img-" + version, "/boot/initramfs-" + version + ".img"}) {
    if (exists(image, initrd)) {
      found.initrd = initrd;
      break;
    }
  }
  found.found_in = "/boot (no boot loader configuration: its newest kernel)";
  return found;
}

// Copies of files in the guest's disk, made again whenever needed: no fsync.
Result<> write_out(Ext4Image& image, const std::string& path, const fs::path& target) {
  KILN_ASSIGN(AtomicFile file, AtomicFile::create(target, 0644));
  KILN_TRY(image.copy_file_to(path, file.fd()));
  return file.commit(AtomicFile::Durability::kCache);
}

// What the files in an output directory were taken from: the disk as it
// was (its identity and last change) and the paths in it.
std::string extraction_stamp(const GuestBootFiles& found, const fs::path& disk) {
  struct stat st {};
  if (::stat(disk.c_str(), &st) != 0) return {};
  return fmt::format("{} {} {} {} {}.{} {} {} {}\n", fs::absolute(disk).string(), st.st_dev, st.st_ino, st.st_size,
                     st.st_mtim.tv_sec, st.st_mtim.tv_nsec, found.offset, found.kernel, found.initrd);
}

}  // namespace

Result<GuestBootFiles> find_guest_boot_files(const fs::path& disk, const BootLoaderArgs& args) {
  std::error_code ec;
  if (!fs::exists(disk, ec)) return fail(ErrorKind::kBadInput, "{}: no such disk", disk.string());
  std::optional<GuestBootFiles> fallback;
  for (const Candidate& candidate : candidates(disk)) {
    auto image = Ext4Image::open(disk, candidate.offset, /*writable=*/false);
    if (!image) continue;  // an ESP, swap, or not a filesystem kiln reads
    std::optional<GuestBootFiles> found;
    if (!args.kernel.empty()) {
      if (exists(*image, args.kernel)) {
        found = GuestBootFiles{0, 0, args.kernel, args.ramdisk, args.args, "bootloader_args --kernel"};
        if (!args.ramdisk.empty() && !exists(*image, args.ramdisk))
          return fail(ErrorKind::kBadInput, "{}: --ramdisk={} is not in the filesystem that has {}", disk.string(),
                      args.ramdisk, args.kernel);
      }
    } else {
      KILN_ASSIGN(found, from_menu(*image, args));
      if (found && !args.args.empty()) found->command_line += (found->command_line.empty() ? "" : " ") + args.args;
      if (!found && !fallback) {
        fallback = newest_kernel(*image);
        if (fallback) {
          fallback->partition = candidate.partition;
          fallback->offset = candidate.offset;
          fallback->command_line = args.args;
        }
      }
    }
    if (!found) continue;
    found->partition = candidate.partition;
    found->offset = candidate.offset;
    if (!exists(*image, found->kernel))
      return fail(ErrorKind::kBadInput, "{}: {} names the kernel {}, which is not in its filesystem", disk.string(),
                  found->found_in, found->kernel);
    return *found;
  }
  if (fallback) return *fallback;
  if (!args.kernel.empty())
    return fail(ErrorKind::kBadInput, "{}: --kernel={} is in none of its ext2/3/4 filesystems", disk.string(),
                args.kernel);
  return fail(ErrorKind::kBadInput,
              "{}: no /boot/grub/grub.cfg, menu.lst or /boot/vmlinuz-* in any of its ext2/3/4 filesystems "
              "(pygrub looks for a GRUB configuration, then a kernel in /boot)",
              disk.string());
}

Result<> extract_guest_boot_files(const GuestBootFiles& found, const fs::path& disk, const fs::path& out_dir) {
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return fail_errno("cannot create", out_dir.string(), ec.value());
  // The same files of the same disk, unchanged since: nothing to do.
  std::string stamp = extraction_stamp(found, disk);
  fs::path stamp_file = out_dir / "extracted-from";
  auto previous = read_file(stamp_file);
  if (!stamp.empty() && previous && *previous == stamp && fs::exists(out_dir / "vmlinuz")) return {};
  fs::remove(stamp_file, ec);
  KILN_ASSIGN(Ext4Image image, Ext4Image::open(disk, found.offset, /*writable=*/false));
  KILN_TRY(write_out(image, found.kernel, out_dir / "vmlinuz"));
  if (found.initrd.empty()) {
    fs::remove(out_dir / "initrd.img", ec);
  } else {
    KILN_TRY(write_out(image, found.initrd, out_dir / "initrd.img"));
  }
  if (stamp.empty()) return {};
  KILN_ASSIGN(AtomicFile file, AtomicFile::create(stamp_file, 0644));
  KILN_TRY(file.write(stamp));
  return file.commit(AtomicFile::Durability::kCache);
}

}  // namespace kiln
