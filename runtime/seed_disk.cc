#include "runtime/seed_disk.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>

#include "base/files.h"
#include "base/size.h"
#include "base/uuid.h"
#include "formats/ext4/ext4_image.h"
#include "formats/image/guest_protocol.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

Result<> write_parents(Ext4Image& seed, const std::string& path, int64_t now) {
  std::string parent;
  size_t start = 1;
  while (true) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) return {};
    parent = path.substr(0, slash);
    KILN_ASSIGN(auto st, seed.stat(parent));
    if (!st) KILN_TRY(seed.make_directory(parent, {0755, 0, 0, now}));
    start = slash + 1;
  }
}

Result<> put(Ext4Image& seed, std::string_view path, std::string_view content, uint32_t mode, int64_t now) {
  std::string where(path);
  KILN_TRY(write_parents(seed, where, now));
  return seed.write_file(where, content, {mode, 0, 0, now});
}

uint64_t payload_size(const InstanceSpec& spec) {
  uint64_t total = 0;
  std::error_code ec;
  for (const PersonalityFile& file : spec.personality.files) total += fs::file_size(file.source, ec);
  if (!spec.personality.firstboot.empty()) total += fs::file_size(spec.personality.firstboot, ec);
  return total;
}

// The version in the name keeps an old template from a kiln that laid it
// out differently from being used.
constexpr std::string_view kTemplateName = "seed-template-2.img";
constexpr uint64_t kTemplateSize = 4 * kMiB;

Ext4Options seed_options(uint64_t size, int64_t now) {
  Ext4Options options;
  options.size_bytes = size;
  // Read-only in the guest, a few KiB: no journal to carry.
  options.fs_type = "ext2";
  options.label = std::string(kSeedLabel);
  options.uuid = Uuid::random();
  options.hash_seed = Uuid::random();
  options.timestamp = now;
  return options;
}

Result<fs::path> seed_template(const fs::path& dir, int64_t now) {
  fs::path path = dir / kTemplateName;
  if (fs::exists(path)) return path;
  std::error_code ec;
  fs::create_directories(dir, ec);
  KILN_ASSIGN(AtomicFile file, AtomicFile::create(path, 0600));
  KILN_ASSIGN(Ext4Image empty, Ext4Image::format(file.temp_path(), seed_options(kTemplateSize, now)));
  KILN_TRY(empty.close());
  KILN_TRY(file.commit());
  return path;
}

// A seed filesystem at `target`: a copy of the template, or a fresh one
// when the payload would not fit it.
Result<Ext4Image> start_seed(const fs::path& target, const InstanceSpec& spec, const fs::path& template_dir,
                             int64_t now) {
  uint64_t size = seed_disk_size(spec);
  if (size != kTemplateSize) return Ext4Image::format(target, seed_options(size, now));
  KILN_ASSIGN(fs::path source, seed_template(template_dir, now));
  KILN_ASSIGN(UniqueFd in, open_file(source, O_RDONLY));
  KILN_ASSIGN(UniqueFd out, open_file(target, O_RDWR | O_CREAT | O_TRUNC, 0600));
  if (::ftruncate(out.get(), static_cast<off_t>(kTemplateSize)) != 0)
    return fail_errno("cannot size", target.string(), errno);
  KILN_TRY(copy_sparse(in.get(), 0, out.get(), 0, kTemplateSize, source.string()));
  return Ext4Image::open(target, 0, true);
}

}  // namespace

uint64_t seed_disk_size(const InstanceSpec& spec) {
  uint64_t payload = payload_size(spec);
  return payload * 2 + kMiB > kTemplateSize ? round_up(4 * kMiB + 2 * payload, kMiB) : kTemplateSize;
}

std::string static_network_file(const NicSpec& nic) {
  std::string text = fmt::format("# Written by kiln: the address kiln gave this NIC.\n[Match]\nMACAddress={}\n\n"
                                 "[Network]\nAddress={}\n",
                                 nic.mac, nic.address);
  if (!nic.gateway.empty()) text += fmt::format("Gateway={}\n", nic.gateway);
  if (!nic.dns.empty()) text += fmt::format("DNS={}\n", nic.dns);
  // Instance names are single labels; the search domain makes them
  // resolve through the network's DNS, which answers for NAME.NETWORK.
  if (!nic.network.empty() && !nic.dns.empty()) text += fmt::format("Domains={}\n", nic.network);
  return text;
}

Result<> write_seed_disk(const fs::path& image, const InstanceSpec& spec, std::string_view hosts,
                         const fs::path& template_dir) {
  const Personality& p = spec.personality;
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  KILN_ASSIGN(AtomicFile target, AtomicFile::create(image, 0600));
  KILN_ASSIGN(Ext4Image seed, start_seed(target.temp_path(), spec, template_dir, now));
  KILN_TRY(put(seed, kSeedInstanceId, spec.id + "\n", 0644, now));
  if (!p.hostname.empty()) KILN_TRY(put(seed, kSeedHostname, p.hostname + "\n", 0644, now));
  KILN_TRY(put(seed, kSeedMachineId, p.machine_id + "\n", 0644, now));
  if (!spec.network.nics.empty()) KILN_TRY(put(seed, kSeedMac, spec.network.first_mac() + "\n", 0644, now));
  for (size_t i = 0; i < spec.network.nics.size(); ++i) {
    const NicSpec& nic = spec.network.nics[i];
    if (nic.address.empty()) continue;
    KILN_TRY(put(seed, fmt::format("{}/10-kiln-eth{}.network", kSeedNetwork, i), static_network_file(nic), 0644, now));
  }
  if (!hosts.empty()) KILN_TRY(put(seed, kSeedHosts, hosts, 0644, now));
  std::string keys;
  for (const std::string& key : p.ssh_keys) keys += key + "\n";
  if (!keys.empty()) KILN_TRY(put(seed, kSeedAuthorizedKeys, keys, 0600, now));
  for (const SshHostKey& key : p.ssh_host_keys) {
    std::string path = fmt::format("{}/{}", kSeedSshHostKeys, key.file_name);
    KILN_TRY(put(seed, path, key.private_key, 0600, now));
    KILN_TRY(put(seed, path + ".pub", key.public_key, 0644, now));
  }
  if (!p.firstboot.empty()) {
    KILN_ASSIGN(std::string script, read_file(p.firstboot));
    KILN_TRY(put(seed, kSeedFirstboot, script, 0755, now));
  }
  for (const PersonalityFile& file : p.files) {
    KILN_ASSIGN(std::string content, read_file(file.source));
    struct stat st;
    uint32_t mode = ::stat(file.source.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0644;
    KILN_TRY(put(seed, std::string(kSeedFiles) + file.destination, content, mode, now));
  }
  KILN_TRY(seed.close());
  return target.commit();
}

}  // namespace kiln
