#include "crypto/luks.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <mutex>
#include <vector>

#include <libcryptsetup.h>

#include "base/files.h"
#include "base/size.h"
#include "crypto/sector_cipher.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kLuks2HeaderSize = 16 * kMiB;
constexpr uint64_t kLuks1HeaderSize = 2 * kMiB;
// Read from an image to find a header's own size before copying all of it.
constexpr uint64_t kFirstRead = 16 * kMiB;
constexpr std::string_view kLuksMagic = "LUKS\xba\xbe";
// Unlocking a throwaway header in the reencryption fallback: speed, not strength.
constexpr uint32_t kThrowawayIterations = 1000;

// kiln never wants libcryptsetup's lock files in /run/cryptsetup: it works
// on private files only.
void disable_locking() {
  static std::once_flag once;
  std::call_once(once, [] {
    crypt_metadata_locking(nullptr, 0);
    // Messages before a context has its own callback would go to stderr;
    // kiln reports failures itself.
    crypt_set_log_callback(nullptr, [](int, const char*, void*) {}, nullptr);
  });
}

// libcryptsetup's messages for one operation, kept for the error detail.
struct Messages {
  std::string text;
  static void collect(int level, const char* message, void* data) {
    if (level == CRYPT_LOG_DEBUG || level == CRYPT_LOG_DEBUG_JSON || !message) return;
    auto* self = static_cast<Messages*>(data);
    self->text += message;
  }
};

struct DeviceDeleter {
  void operator()(crypt_device* cd) const { crypt_free(cd); }
};
using DevicePtr = std::unique_ptr<crypt_device, DeviceDeleter>;

// An initialised libcryptsetup context on a file, with its messages.
struct Context {
  DevicePtr cd;
  std::unique_ptr<Messages> messages = std::make_unique<Messages>();
  std::string what;  // the file or region, for errors

  std::unexpected<Error> failure(std::string_view action, int rc) const {
    Error error{ErrorKind::kFailed, fmt::format("{}: {}: {}", what, action, std::strerror(rc < 0 ? -rc : rc)), {},
                messages->text};
    return std::unexpected(std::move(error));
  }
};

Result<Context> open_context(const fs::path& file, std::string what) {
  disable_locking();
  crypt_device* raw = nullptr;
  if (int rc = crypt_init(&raw, file.c_str()); rc < 0)
    return fail(ErrorKind::kFailed, "{}: libcryptsetup cannot open it: {}", what, std::strerror(-rc));
  Context context{DevicePtr(raw)};
  context.what = std::move(what);
  crypt_set_log_callback(raw, Messages::collect, context.messages.get());
  return context;
}

crypt_pbkdf_type pbkdf_type(const PbkdfSettings& settings) {
  crypt_pbkdf_type out{};
  out.type = settings.type.c_str();
  out.hash = settings.hash.c_str();
  out.time_ms = settings.time_ms;
  if (settings.type != CRYPT_KDF_PBKDF2) {
    out.max_memory_kb = settings.memory_kib;
    out.parallel_threads = 4;
  }
  if (settings.iterations > 0) {
    out.iterations = settings.iterations;
    out.flags = CRYPT_PBKDF_NO_BENCHMARK;
  }
  return out;
}

Result<> set_pbkdf(Context& context, const PbkdfSettings& settings) {
  crypt_pbkdf_type pbkdf = pbkdf_type(settings);
  if (int rc = crypt_set_pbkdf_type(context.cd.get(), &pbkdf); rc < 0)
    return context.failure(fmt::format("cannot use key derivation {}", settings.type), rc);
  return {};
}

Result<> check_key(const LuksSettings& settings, const Secret& volume_key) {
  if (volume_key.size() != settings.key_bytes)
    return fail(ErrorKind::kFailed, "internal: a {}-byte volume key for a {}-bit cipher", volume_key.size(),
                settings.key_bytes * 8);
  return {};
}

// Formats `device` and returns the data offset; `data_device` set makes the
// header detached (data offset 0).
Result<uint64_t> format(Context& context, const LuksSettings& settings, const Secret& volume_key,
                        const char* data_device) {
  KILN_TRY(check_key(settings, volume_key));
  KILN_ASSIGN(CipherSpec spec, CipherSpec::parse(settings.cipher));
  crypt_pbkdf_type pbkdf = pbkdf_type(settings.pbkdf);
  std::string mode = spec.mode();
  int rc = 0;
  if (settings.version == "luks1") {
    crypt_params_luks1 params{};
    params.hash = settings.hash.c_str();
    params.data_device = data_device;
    KILN_TRY(set_pbkdf(context, settings.pbkdf));
    rc = crypt_format(context.cd.get(), CRYPT_LUKS1, spec.cipher.c_str(), mode.c_str(), settings.uuid.empty() ? nullptr : settings.uuid.c_str(),
                      volume_key.data(), volume_key.size(), &params);
  } else {
    crypt_params_luks2 params{};
    params.pbkdf = &pbkdf;
    params.data_device = data_device;
    params.sector_size = settings.sector_size;
    params.label = settings.label.empty() ? nullptr : settings.label.c_str();
    rc = crypt_format(context.cd.get(), CRYPT_LUKS2, spec.cipher.c_str(), mode.c_str(), settings.uuid.empty() ? nullptr : settings.uuid.c_str(),
                      volume_key.data(), volume_key.size(), &params);
  }
  if (rc < 0) return context.failure(fmt::format("cannot format a {} header", settings.version), rc);
  return crypt_get_data_offset(context.cd.get()) * 512;
}

Result<int> add_keyslot(Context& context, const Secret& volume_key, const Secret& key) {
  int slot = crypt_keyslot_add_by_volume_key(context.cd.get(), CRYPT_ANY_SLOT, volume_key.data(), volume_key.size(),
                                             key.data(), key.size());
  if (slot < 0) return context.failure("cannot add a keyslot", slot);
  return slot;
}

// A private copy of an image's LUKS header to work on with libcryptsetup:
// a file as large as the volume, holding the header and sparse after it.
// commit() writes back the blocks that changed; without it the image is
// never written.
class HeaderCopy {
 public:
  static Result<HeaderCopy> open(const LuksRegion& region) {
    KILN_ASSIGN(bool luks, has_luks_header(region.image, region.offset));
    if (!luks) return fail(ErrorKind::kBadInput, "{}: no LUKS header there", region.description);
    // Beside the image, private: a header holds the encrypted keyslots.
    KILN_ASSIGN(TempDir dir, TempDir::create(region.image.parent_path(), "kiln-luks"));
    HeaderCopy copy(region, std::move(dir));
    KILN_TRY(copy.copy_in(std::min(region.size, kFirstRead)));
    KILN_ASSIGN(copy.context_, open_context(copy.file(), region.description));
    if (int rc = crypt_load(copy.context_.cd.get(), CRYPT_LUKS, nullptr); rc < 0)
      return copy.context_.failure("cannot read the LUKS header", rc);
    uint64_t offset = crypt_get_data_offset(copy.context_.cd.get()) * 512;
    if (offset > region.size)
      return fail(ErrorKind::kBadInput, "{}: the LUKS header says the data starts at {}, past the volume's end",
                  region.description, offset);
    if (offset > copy.copied_) {
      KILN_TRY(copy.copy_in(offset));
      KILN_ASSIGN(copy.context_, open_context(copy.file(), region.description));
      if (int rc = crypt_load(copy.context_.cd.get(), CRYPT_LUKS, nullptr); rc < 0)
        return copy.context_.failure("cannot read the LUKS header", rc);
    }
    copy.header_size_ = offset;
    return copy;
  }

  Context& context() { return context_; }
  crypt_device* cd() { return context_.cd.get(); }

  Result<> commit() {
    context_.cd.reset();  // libcryptsetup has written everything
    KILN_ASSIGN(UniqueFd copy, open_file(file(), O_RDONLY | O_CLOEXEC));
    KILN_ASSIGN(UniqueFd image, open_file(region_.image, O_RDWR | O_CLOEXEC));
    constexpr size_t kChunk = 64 * 1024;
    std::vector<char> mine(kChunk), theirs(kChunk);
    bool changed = false;
    for (uint64_t at = 0; at < header_size_; at += kChunk) {
      size_t length = static_cast<size_t>(std::min<uint64_t>(kChunk, header_size_ - at));
      KILN_TRY(pread_all(copy.get(), mine.data(), length, at, file().string()));
      KILN_TRY(pread_all(image.get(), theirs.data(), length, region_.offset + at, region_.image.string()));
      if (std::memcmp(mine.data(), theirs.data(), length) == 0) continue;
      KILN_TRY(pwrite_all(image.get(), mine.data(), length, region_.offset + at, region_.image.string()));
      changed = true;
    }
    if (changed && ::fsync(image.get()) != 0) return fail_errno("cannot sync", region_.image.string(), errno);
    return {};
  }

  // The private copy libcryptsetup works on.
  fs::path file() const { return dir_.path() / "header"; }

 private:
  HeaderCopy(const LuksRegion& region, TempDir dir) : region_(region), dir_(std::move(dir)) {}

  static Result<> pread_all(int fd, char* data, size_t size, uint64_t offset, const std::string& what) {
    size_t done = 0;
    while (done < size) {
      ssize_t n = ::pread(fd, data + done, size - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return fail_errno("cannot read", what, errno);
      if (n == 0) return fail(ErrorKind::kBadInput, "{}: ends before the LUKS header does", what);
      done += static_cast<size_t>(n);
    }
    return {};
  }

  Result<> copy_in(uint64_t length) {
    std::error_code ignored;
    fs::remove(file(), ignored);
    KILN_ASSIGN(UniqueFd source, open_file(region_.image, O_RDONLY | O_CLOEXEC));
    KILN_ASSIGN(UniqueFd target, open_file(file(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (::ftruncate(target.get(), static_cast<off_t>(region_.size)) != 0)
      return fail_errno("cannot size", file().string(), errno);
    KILN_TRY(copy_sparse(source.get(), region_.offset, target.get(), 0, length, region_.image.string()));
    copied_ = length;
    return {};
  }

  LuksRegion region_;
  TempDir dir_;
  Context context_;
  uint64_t copied_ = 0;
  uint64_t header_size_ = 0;
};

// The keyslot `key` opens, or a clear error; the passphrase never shows.
Result<int> unlocked_slot(HeaderCopy& header, const Secret& key, const LuksRegion& region) {
  int slot = crypt_activate_by_passphrase(header.cd(), nullptr, CRYPT_ANY_SLOT, key.data(), key.size(), 0);
  if (slot == -EPERM)
    return fail(ErrorKind::kBadInput, "{}: the given passphrase or key opens no keyslot; nothing was changed",
                region.description);
  if (slot < 0) return header.context().failure("cannot check the key", slot);
  return slot;
}

// New keyslots get what the unlocking one has, as cryptsetup does.
Result<> inherit_pbkdf(HeaderCopy& header, int slot, const std::optional<PbkdfSettings>& override_settings) {
  if (override_settings) return set_pbkdf(header.context(), *override_settings);
  crypt_pbkdf_type pbkdf{};
  if (int rc = crypt_keyslot_get_pbkdf(header.cd(), slot, &pbkdf); rc < 0)
    return header.context().failure(fmt::format("cannot read keyslot {}'s key derivation", slot), rc);
  pbkdf.flags |= CRYPT_PBKDF_NO_BENCHMARK;
  if (int rc = crypt_set_pbkdf_type(header.cd(), &pbkdf); rc < 0)
    return header.context().failure("cannot reuse the keyslot's key derivation", rc);
  return {};
}

int active_keyslots(crypt_device* cd) {
  int count = 0;
  for (int slot = 0; slot < crypt_keyslot_max(crypt_get_type(cd)); ++slot) {
    crypt_keyslot_info info = crypt_keyslot_status(cd, slot);
    if (info == CRYPT_SLOT_ACTIVE || info == CRYPT_SLOT_ACTIVE_LAST) ++count;
  }
  return count;
}

}  // namespace

uint64_t luks_header_size(std::string_view version) {
  return version == "luks1" ? kLuks1HeaderSize : kLuks2HeaderSize;
}

Result<uint64_t> format_luks(const fs::path& device, const LuksSettings& settings, const Secret& volume_key,
                             std::span<const Secret* const> keys) {
  KILN_ASSIGN(Context context, open_context(device, device.string()));
  KILN_ASSIGN(uint64_t offset, format(context, settings, volume_key, nullptr));
  if (settings.version == "luks1") KILN_TRY(set_pbkdf(context, settings.pbkdf));
  for (const Secret* key : keys) KILN_TRY(add_keyslot(context, volume_key, *key));
  return offset;
}

Result<> encrypt_with_libcryptsetup(const fs::path& data, const LuksSettings& settings, const Secret& volume_key,
                                    const std::function<void(uint64_t, uint64_t)>& progress) {
  if (settings.version != "luks2")
    return fail(ErrorKind::kBadInput, "libcryptsetup's reencryption takes LUKS2 only, not {}", settings.version);
  // A detached throwaway header (data offset 0) over the data file, with a
  // random passphrase of its own: the real header is made separately, for
  // the same volume key.
  KILN_ASSIGN(TempDir dir, TempDir::create(data.parent_path(), "kiln-reencrypt"));
  fs::path header = dir.path() / "header";
  {
    KILN_ASSIGN(UniqueFd created, open_file(header, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (::ftruncate(created.get(), static_cast<off_t>(luks_header_size(settings.version))) != 0)
      return fail_errno("cannot size", header.string(), errno);
  }
  LuksSettings throwaway = settings;
  throwaway.pbkdf = PbkdfSettings{"pbkdf2", "sha256", 0, kThrowawayIterations, 0};
  throwaway.label.clear();
  KILN_ASSIGN(Secret passphrase, Secret::random(32));
  KILN_ASSIGN(Context context, open_context(header, data.string()));
  KILN_TRY(format(context, throwaway, volume_key, data.c_str()));
  KILN_ASSIGN(int slot, add_keyslot(context, volume_key, passphrase));

  KILN_ASSIGN(CipherSpec spec, CipherSpec::parse(settings.cipher));
  std::string mode = spec.mode();
  crypt_params_luks2 luks2{};
  luks2.sector_size = settings.sector_size;
  crypt_params_reencrypt params{};
  params.mode = CRYPT_REENCRYPT_ENCRYPT;
  params.direction = CRYPT_REENCRYPT_FORWARD;
  params.resilience = "none";  // a private file: nothing to recover after a crash
  params.luks2 = &luks2;
  params.flags = CRYPT_REENCRYPT_INITIALIZE_ONLY;
  int rc = crypt_reencrypt_init_by_passphrase(context.cd.get(), nullptr, passphrase.data(), passphrase.size(),
                                              CRYPT_ANY_SLOT, slot, spec.cipher.c_str(), mode.c_str(), &params);
  if (rc < 0) return context.failure("cannot set up libcryptsetup's encryption", rc);
  params.flags = CRYPT_REENCRYPT_RESUME_ONLY;
  rc = crypt_reencrypt_init_by_passphrase(context.cd.get(), nullptr, passphrase.data(), passphrase.size(),
                                          CRYPT_ANY_SLOT, slot, nullptr, nullptr, &params);
  if (rc < 0) return context.failure("cannot start libcryptsetup's encryption", rc);
  struct Progress {
    const std::function<void(uint64_t, uint64_t)>* callback;
    static int report(uint64_t size, uint64_t offset, void* data) {
      auto* self = static_cast<Progress*>(data);
      if (*self->callback) (*self->callback)(offset, size);
      return 0;
    }
  } report{&progress};
  rc = crypt_reencrypt_run(context.cd.get(), Progress::report, &report);
  if (rc < 0) return context.failure("libcryptsetup's encryption failed", rc);
  return {};
}

Result<Secret> plain_dmcrypt_key(std::string_view cipher, uint32_t key_bytes, std::string_view hash,
                                 const Secret& passphrase) {
  KILN_ASSIGN(CipherSpec spec, CipherSpec::parse(cipher));
  std::string mode = spec.mode();
  std::string hash_name(hash);
  // A plain context needs a device (a file will do), but deriving the key
  // reads nothing from it.
  KILN_ASSIGN(TempDir dir, TempDir::create(fs::temp_directory_path(), "kiln-plain"));
  fs::path device = dir.path() / "device";
  {
    KILN_ASSIGN(UniqueFd created, open_file(device, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (::ftruncate(created.get(), static_cast<off_t>(kMiB)) != 0) return fail_errno("cannot size", device.string(), errno);
  }
  KILN_ASSIGN(Context context, open_context(device, "plain dm-crypt"));
  crypt_params_plain params{};
  params.hash = hash_name.c_str();
  params.sector_size = 512;
  if (int rc = crypt_format(context.cd.get(), CRYPT_PLAIN, spec.cipher.c_str(), mode.c_str(), nullptr, nullptr,
                            key_bytes, &params);
      rc < 0)
    return context.failure(fmt::format("cannot set up plain {}", cipher), rc);
  Secret key(key_bytes);
  size_t size = key.size();
  if (int rc = crypt_volume_key_get(context.cd.get(), CRYPT_ANY_SLOT, key.data(), &size, passphrase.data(),
                                    passphrase.size());
      rc < 0)
    return context.failure("cannot derive the key from the passphrase", rc);
  if (size != key_bytes) return fail(ErrorKind::kFailed, "plain dm-crypt: a {}-byte key, not {}", size, key_bytes);
  return key;
}

Result<bool> has_luks_header(const fs::path& image, uint64_t offset) {
  KILN_ASSIGN(UniqueFd fd, open_file(image, O_RDONLY | O_CLOEXEC));
  char magic[6] = {};
  ssize_t n = ::pread(fd.get(), magic, sizeof magic, static_cast<off_t>(offset));
  if (n < 0) return fail_errno("cannot read", image.string(), errno);
  return n == static_cast<ssize_t>(sizeof magic) && std::string_view(magic, sizeof magic) == kLuksMagic;
}

Result<std::string> luks_dump(const LuksRegion& region) {
  KILN_ASSIGN(HeaderCopy header, HeaderCopy::open(region));
  header.context().messages->text.clear();
  if (int rc = crypt_dump(header.cd()); rc < 0) return header.context().failure("cannot dump the header", rc);
  // libcryptsetup names the file it read: the private copy, not the image.
  std::string text = header.context().messages->text;
  const std::string copy = header.file().string();
  for (size_t at = text.find(copy); at != std::string::npos; at = text.find(copy, at + region.description.size()))
    text.replace(at, copy.size(), region.description);
  return text;
}

Result<std::vector<KeyslotState>> luks_keyslots(const LuksRegion& region) {
  KILN_ASSIGN(HeaderCopy header, HeaderCopy::open(region));
  std::vector<KeyslotState> out;
  for (int slot = 0; slot < crypt_keyslot_max(crypt_get_type(header.cd())); ++slot) {
    crypt_keyslot_info info = crypt_keyslot_status(header.cd(), slot);
    out.push_back({slot, info == CRYPT_SLOT_ACTIVE || info == CRYPT_SLOT_ACTIVE_LAST});
  }
  return out;
}

Result<UnlockedLuks> luks_unlock(const LuksRegion& region, const Secret& passphrase) {
  KILN_ASSIGN(HeaderCopy header, HeaderCopy::open(region));
  KILN_ASSIGN(int slot, unlocked_slot(header, passphrase, region));
  crypt_device* cd = header.cd();
  UnlockedLuks out;
  out.keyslot = slot;
  int key_size = crypt_get_volume_key_size(cd);
  if (key_size <= 0) return fail(ErrorKind::kBadInput, "{}: the LUKS header gives no key size", region.description);
  out.volume_key = Secret(static_cast<size_t>(key_size));
  size_t size = out.volume_key.size();
  if (int rc = crypt_volume_key_get(cd, slot, out.volume_key.data(), &size, passphrase.data(), passphrase.size());
      rc < 0)
    return header.context().failure("cannot take the volume key", rc);
  std::string type = crypt_get_type(cd);
  std::ranges::transform(type, type.begin(), [](unsigned char c) { return std::tolower(c); });
  out.version = type;
  out.cipher = fmt::format("{}-{}", crypt_get_cipher(cd), crypt_get_cipher_mode(cd));
  int sector = crypt_get_sector_size(cd);
  out.sector_size = sector > 0 ? static_cast<uint32_t>(sector) : 512;
  out.data_offset = crypt_get_data_offset(cd) * 512;
  if (const char* uuid = crypt_get_uuid(cd)) out.uuid = uuid;
  out.active_keyslots = active_keyslots(cd);
  return out;
}

Result<int> luks_add_key(const LuksRegion& region, const Secret& existing, const Secret& added,
                         const std::optional<PbkdfSettings>& pbkdf) {
  KILN_ASSIGN(HeaderCopy header, HeaderCopy::open(region));
  KILN_ASSIGN(int unlocked, unlocked_slot(header, existing, region));
  KILN_TRY(inherit_pbkdf(header, unlocked, pbkdf));
  int slot = crypt_keyslot_add_by_passphrase(header.cd(), CRYPT_ANY_SLOT, existing.data(), existing.size(),
                                             added.data(), added.size());
  if (slot < 0) return header.context().failure("cannot add a keyslot", slot);
  KILN_TRY(header.commit());
  return slot;
}

Result<int> luks_change_key(const LuksRegion& region, const Secret& existing, const Secret& replacement) {
  KILN_ASSIGN(HeaderCopy header, HeaderCopy::open(region));
  KILN_ASSIGN(int unlocked, unlocked_slot(header, existing, region));
  KILN_TRY(inherit_pbkdf(header, unlocked, std::nullopt));
  int slot = crypt_keyslot_change_by_passphrase(header.cd(), unlocked, unlocked, existing.data(), existing.size(),
                                                replacement.data(), replacement.size());
  if (slot < 0) return header.context().failure(fmt::format("cannot change keyslot {}", unlocked), slot);
  KILN_TRY(header.commit());
  return slot;
}

Result<int> luks_remove_key(const LuksRegion& region, std::optional<int> slot, const Secret* key, bool force) {
  KILN_ASSIGN(HeaderCopy header, HeaderCopy::open(region));
  int target = 0;
  if (slot) {
    target = *slot;
    int max = crypt_keyslot_max(crypt_get_type(header.cd()));
    if (target < 0 || target >= max)
      return fail(ErrorKind::kBadInput, "{}: keyslot {} does not exist (a {} header has keyslots 0 to {})",
                  region.description, target, crypt_get_type(header.cd()), max - 1);
    crypt_keyslot_info info = crypt_keyslot_status(header.cd(), target);
    if (info != CRYPT_SLOT_ACTIVE && info != CRYPT_SLOT_ACTIVE_LAST)
      return fail(ErrorKind::kBadInput, "{}: keyslot {} is empty; nothing was changed", region.description, target);
  } else if (key) {
    KILN_ASSIGN(target, unlocked_slot(header, *key, region));
  } else {
    return fail(ErrorKind::kBadInput, "name the keyslot to remove, or give its key");
  }
  if (active_keyslots(header.cd()) == 1 && !force)
    return fail(ErrorKind::kBadInput,
                "{}: keyslot {} is the last one that opens the volume: without it the data is lost for good; "
                "add another key first (kiln luks add-key), or pass --force",
                region.description, target);
  if (int rc = crypt_keyslot_destroy(header.cd(), target); rc < 0)
    return header.context().failure(fmt::format("cannot remove keyslot {}", target), rc);
  KILN_TRY(header.commit());
  return target;
}

}  // namespace kiln
