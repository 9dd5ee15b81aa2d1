// kiln luks dump|add-key|remove-key|change-key IMAGE: LUKS key management on
// image files (disk.raw, or an encrypted root.img), through libcryptsetup,
// with no device-mapper and no loop device. Keys and passphrases come from
// files only, never from the command line.
#include <optional>

#include "cli/command.h"
#include "crypto/luks.h"
#include "formats/luks_volume.h"

namespace kiln::cli {
namespace {

struct LuksFlags {
  std::string image;
  int partition = 0;  // 0: find it
  std::string key_file;
  std::string passphrase_file;
  std::string new_key_file;
  std::string new_passphrase_file;
  int slot = -1;
  bool force = false;
};

Result<LuksRegion> region_of(const LuksFlags& flags) {
  return find_luks_volume(flags.image, flags.partition > 0 ? std::optional<int>(flags.partition) : std::nullopt);
}

// A key from --key-file (the whole file, as cryptsetup reads it) or
// --passphrase-file (its first line, as typed at a prompt).
Result<std::optional<Secret>> key_from(const std::string& key_file, const std::string& passphrase_file,
                                       std::string_view flag_prefix) {
  if (!key_file.empty() && !passphrase_file.empty())
    return fail(ErrorKind::kBadInput, "give either --{0}key-file or --{0}passphrase-file, not both", flag_prefix);
  if (!key_file.empty()) {
    KILN_ASSIGN(Secret key, Secret::key_file(key_file));
    return std::optional<Secret>(std::move(key));
  }
  if (!passphrase_file.empty()) {
    KILN_ASSIGN(Secret key, Secret::passphrase_file(passphrase_file));
    return std::optional<Secret>(std::move(key));
  }
  return std::optional<Secret>();
}

Result<Secret> required_key(const std::string& key_file, const std::string& passphrase_file,
                            std::string_view flag_prefix, std::string_view role) {
  KILN_ASSIGN(std::optional<Secret> key, key_from(key_file, passphrase_file, flag_prefix));
  if (!key)
    return fail(ErrorKind::kBadInput, "give the {} with --{}key-file FILE or --{}passphrase-file FILE", role,
                flag_prefix, flag_prefix);
  return std::move(*key);
}

int run_dump(const LuksFlags& flags) {
  auto dump = [&]() -> Result<std::string> {
    KILN_ASSIGN(LuksRegion region, region_of(flags));
    KILN_ASSIGN(std::string text, luks_dump(region));
    return fmt::format("{} (at byte {}, {} bytes)\n{}", region.description, region.offset, region.size, text);
  }();
  return finish(dump, [](const std::string& text) { fmt::print("{}", text); });
}

int run_add_key(const LuksFlags& flags) {
  auto added = [&]() -> Result<std::string> {
    KILN_ASSIGN(LuksRegion region, region_of(flags));
    KILN_ASSIGN(Secret existing, required_key(flags.key_file, flags.passphrase_file, "", "existing key"));
    KILN_ASSIGN(Secret added_key, required_key(flags.new_key_file, flags.new_passphrase_file, "new-", "new key"));
    KILN_ASSIGN(int slot, luks_add_key(region, existing, added_key));
    return fmt::format("{}: added keyslot {}\n", region.description, slot);
  }();
  return finish(added, [](const std::string& text) { fmt::print("{}", text); });
}

int run_change_key(const LuksFlags& flags) {
  auto changed = [&]() -> Result<std::string> {
    KILN_ASSIGN(LuksRegion region, region_of(flags));
    KILN_ASSIGN(Secret existing, required_key(flags.key_file, flags.passphrase_file, "", "existing key"));
    KILN_ASSIGN(Secret replacement, required_key(flags.new_key_file, flags.new_passphrase_file, "new-", "new key"));
    KILN_ASSIGN(int slot, luks_change_key(region, existing, replacement));
    return fmt::format("{}: changed the key of keyslot {}\n", region.description, slot);
  }();
  return finish(changed, [](const std::string& text) { fmt::print("{}", text); });
}

int run_remove_key(const LuksFlags& flags) {
  auto removed = [&]() -> Result<std::string> {
    KILN_ASSIGN(LuksRegion region, region_of(flags));
    KILN_ASSIGN(std::optional<Secret> key, key_from(flags.key_file, flags.passphrase_file, ""));
    if (flags.slot < 0 && !key)
      return fail(ErrorKind::kBadInput,
                  "name the keyslot to remove with --slot N, or give its key with --key-file or --passphrase-file");
    if (flags.slot >= 0 && key)
      return fail(ErrorKind::kBadInput, "give --slot or the key of the keyslot to remove, not both");
    std::optional<int> slot = flags.slot >= 0 ? std::optional<int>(flags.slot) : std::nullopt;
    KILN_ASSIGN(int gone, luks_remove_key(region, slot, key ? &*key : nullptr, flags.force));
    return fmt::format("{}: removed keyslot {}\n", region.description, gone);
  }();
  return finish(removed, [](const std::string& text) { fmt::print("{}", text); });
}

CLI::App* image_command(CLI::App& luks, const char* name, const char* help, LuksFlags& flags) {
  CLI::App* app = luks.add_subcommand(name, help);
  app->add_option("image", flags.image, "disk.raw, or a LUKS volume file such as an encrypted root.img")->required();
  app->add_option("--partition", flags.partition,
                  "The partition holding the LUKS volume (default: the one that does)");
  return app;
}

void existing_key_options(CLI::App* app, LuksFlags& flags) {
  app->add_option("--key-file", flags.key_file, "A key of the volume: the whole file (as cryptsetup's --key-file)");
  app->add_option("--passphrase-file", flags.passphrase_file,
                  "A passphrase of the volume: the file's first line (as typed at the boot prompt)");
}

void new_key_options(CLI::App* app, LuksFlags& flags) {
  app->add_option("--new-key-file", flags.new_key_file, "The new key: the whole file");
  app->add_option("--new-passphrase-file", flags.new_passphrase_file, "The new passphrase: the file's first line");
}

}  // namespace

void register_luks(CLI::App& root, Registry& registry) {
  auto flags = std::make_shared<LuksFlags>();
  CLI::App* luks = root.add_subcommand("luks", "LUKS keys of an image file: dump, add-key, change-key, remove-key");
  luks->require_subcommand(1);
  luks->footer(
      "These work on the image file itself, with no device-mapper: the header is edited in a private copy and\n"
      "written back only when the operation succeeded, so a wrong key leaves the file byte for byte as it was.");

  CLI::App* dump = image_command(*luks, "dump", "Show the LUKS header (version, cipher, keyslots)", *flags);
  registry.push_back({dump, [flags] { return run_dump(*flags); }});

  CLI::App* add = image_command(*luks, "add-key", "Add a keyslot for a new key, unlocked by an existing one", *flags);
  existing_key_options(add, *flags);
  new_key_options(add, *flags);
  registry.push_back({add, [flags] { return run_add_key(*flags); }});

  CLI::App* change = image_command(*luks, "change-key", "Replace the key of the keyslot an existing key opens", *flags);
  existing_key_options(change, *flags);
  new_key_options(change, *flags);
  registry.push_back({change, [flags] { return run_change_key(*flags); }});

  CLI::App* remove = image_command(*luks, "remove-key", "Remove a keyslot, by number or by its key", *flags);
  remove->add_option("--slot", flags->slot, "The keyslot to remove");
  existing_key_options(remove, *flags);
  remove->add_flag("--force", flags->force, "Remove even the last keyslot (the data becomes unreadable for good)");
  registry.push_back({remove, [flags] { return run_remove_key(*flags); }});
}

}  // namespace kiln::cli
