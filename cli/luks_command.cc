// kiln luks dump|add-key|remove-key|change-key IMAGE: LUKS key management on
// image files (disk.raw, or an encrypted root.img), through libcryptsetup,
// with no device-mapper and no loop device; kiln luks encrypt PLAIN OUT: a
// LUKS volume file from a plain image. Keys and passphrases come from files
// only, never from the command line.
#include <chrono>
#include <optional>

#include "base/size.h"
#include "builder/luks_image.h"
#include "cli/command.h"
#include "crypto/luks.h"
#include "base/uuid.h"
#include "formats/disk/luks_volume.h"

namespace kiln::cli {
namespace {

struct LuksFlags {
  std::string image;
  std::string output;  // encrypt
  LuksSettings settings;
  std::string pbkdf_memory = "256M";
  bool luks1 = false;
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

int run_encrypt(LuksFlags& flags) {
  auto encrypted = [&]() -> Result<std::string> {
    LuksSettings& settings = flags.settings;
    if (flags.luks1) {
      settings.version = "luks1";
      settings.pbkdf.type = "pbkdf2";
      settings.sector_size = 512;
    }
    settings.pbkdf.hash = settings.hash;
    KILN_ASSIGN(uint64_t memory, parse_size(flags.pbkdf_memory));
    settings.pbkdf.memory_kib = static_cast<uint32_t>(memory / 1024);
    settings.uuid = Uuid::random().to_string();
    std::vector<Secret> keys;
    if (!flags.passphrase_file.empty()) {
      KILN_ASSIGN(Secret key, Secret::passphrase_file(flags.passphrase_file));
      keys.push_back(std::move(key));
    }
    if (!flags.key_file.empty()) {
      KILN_ASSIGN(Secret key, Secret::key_file(flags.key_file));
      keys.push_back(std::move(key));
    }
    if (keys.empty()) return fail(ErrorKind::kBadInput, "give a key: --passphrase-file FILE or --key-file FILE");
    std::vector<const Secret*> pointers;
    for (const Secret& key : keys) pointers.push_back(&key);
    Reporter reporter(Reporter::detect(false));
    auto started = std::chrono::steady_clock::now();
    reporter.step("encrypt", fmt::format("{} into {}", flags.image, flags.output));
    KILN_ASSIGN(EncryptionInfo info, encrypt_image(flags.image, flags.output, settings, pointers, reporter));
    reporter.done();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return fmt::format("{}: {} volume ({}, {}-bit key, {}-byte sectors), {} encrypted, in {:.2f} s\n",
                       flags.output, info.type, info.cipher, info.key_bits, info.sector_size,
                       format_size(info.encrypted_bytes), seconds);
  }();
  return finish(encrypted, [](const std::string& text) { fmt::print("{}", text); });
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
  CLI::App* luks =
      root.add_subcommand("luks", "LUKS on image files: dump, add-key, change-key, remove-key, encrypt");
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

  CLI::App* encrypt = luks->add_subcommand("encrypt", "Encrypt an image file into a new LUKS volume file");
  encrypt->add_option("image", flags->image, "The plain image, e.g. root.img")->required();
  encrypt->add_option("output", flags->output, "The LUKS volume file to write")->required();
  existing_key_options(encrypt, *flags);
  encrypt->add_flag("--luks1", flags->luks1, "LUKS1 (pbkdf2, 512-byte sectors) instead of LUKS2");
  encrypt->add_option("--cipher", flags->settings.cipher, "Cipher (default aes-xts-plain64)");
  encrypt->add_option("--key-size", flags->settings.key_bytes, "Volume key size in bytes (default 64)");
  encrypt->add_option("--sector-size", flags->settings.sector_size, "512 or 4096 (default 4096)");
  encrypt->add_option("--pbkdf", flags->settings.pbkdf.type, "argon2id (default), argon2i or pbkdf2");
  encrypt->add_option("--pbkdf-iterations", flags->settings.pbkdf.iterations,
                      "Fixed cost instead of a 2 s benchmark");
  encrypt->add_option("--pbkdf-memory", flags->pbkdf_memory, "argon2 memory (default 256M)");
  encrypt->footer(
      "Only what the image holds is encrypted: for ext2/3/4 the blocks in use, per its block bitmap; free blocks\n"
      "stay holes in OUTPUT (they decrypt to noise, as on any fresh LUKS disk). No device-mapper is needed.");
  registry.push_back({encrypt, [flags] { return run_encrypt(*flags); }});

  CLI::App* remove = image_command(*luks, "remove-key", "Remove a keyslot, by number or by its key", *flags);
  remove->add_option("--slot", flags->slot, "The keyslot to remove");
  existing_key_options(remove, *flags);
  remove->add_flag("--force", flags->force, "Remove even the last keyslot (the data becomes unreadable for good)");
  registry.push_back({remove, [flags] { return run_remove_key(*flags); }});
}

}  // namespace kiln::cli
