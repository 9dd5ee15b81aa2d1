#include "builder/image_outputs.h"

#include <sys/stat.h>

#include <algorithm>
#include <future>
#include <map>

#include "base/files.h"
#include "base/hash.h"
#include "formats/domain/domain_spec.h"
#include "formats/tree/dpkg_status.h"
#include "formats/disk/fat_image.h"
#include "formats/domain/libvirt_xml.h"
#include "formats/disk/qcow2.h"
#include "formats/domain/xen_config.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

// The recipe's kernel arguments minus console=, which differs per hypervisor.
std::string without_consoles(const std::string& cmdline) {
  std::string out;
  size_t start = 0;
  while (start < cmdline.size()) {
    size_t end = cmdline.find(' ', start);
    if (end == std::string::npos) end = cmdline.size();
    std::string word = cmdline.substr(start, end - start);
    if (!word.empty() && !word.starts_with("console=")) out += (out.empty() ? "" : " ") + word;
    start = end + 1;
  }
  return out;
}

DomainSpec base_domain(const Plan& plan) {
  const Recipe& recipe = *plan.recipe;
  DomainSpec spec;
  spec.name = recipe.image.name.value;
  spec.memory_mib = recipe.output.memory.value / (1024 * 1024);
  spec.vcpus = static_cast<int>(recipe.output.vcpus.value);
  return spec;
}

// A Xen PV domain, as in the Xen era: the kernel from the host, the
// partition images as the guest's xvda1 (root), xvda2..., the console on
// hvc0; without partition images, disk.raw as the guest's whole xvda with
// its root partition as root. An encrypted root is unlocked by the
// initramfs, which then finds the root filesystem by its own name.
Result<std::string> xen_config(const Plan& plan, const AssembledImage& image, const fs::path& final_dir) {
  DomainSpec spec = base_domain(plan);
  spec.kernel = (final_dir / "vmlinuz").string();
  spec.ramdisk = (final_dir / "initrd.img").string();
  std::string root_device = "/dev/xvda1";
  if (image.partition_images.empty()) {
    auto root = std::find_if(image.geometry.partitions.begin(), image.geometry.partitions.end(),
                             [](const PlacedPartition& p) { return p.partition.name == "root"; });
    if (image.disk.empty() || root == image.geometry.partitions.end())
      return fail(ErrorKind::kFailed, "internal: a Xen domain needs root.img or a disk.raw with a root partition");
    DomainDisk disk;
    disk.backend = DiskBackend::kFile;
    disk.path = (final_dir / "disk.raw").string();
    disk.frontend = "xvda";
    spec.disks.push_back(disk);
    root_device = fmt::format("/dev/xvda{}", root->number);
  }
  spec.root = (image.encryption ? image.root_device : root_device) + " ro";
  std::string rest = without_consoles(plan.recipe->image.kernel_cmdline.value);
  spec.extra = rest.empty() ? "console=hvc0" : "console=hvc0 " + rest;
  for (size_t i = 0; i < image.partition_images.size(); ++i) {
    DomainDisk disk;
    disk.backend = DiskBackend::kFile;
    disk.path = (final_dir / image.partition_images[i].file).string();
    disk.frontend = fmt::format("xvda{}", i + 1);
    spec.disks.push_back(disk);
  }
  DomainVif vif;
  vif.bridge = "xenbr0";
  spec.vifs.push_back(vif);
  return write_xen_config(spec);
}

// A libvirt domain: UEFI firmware boot of disk.raw for the gpt layout,
// direct kernel boot of root.img for the plain one.
Result<std::string> libvirt_domain(const Plan& plan, const AssembledImage& image, const fs::path& final_dir) {
  DomainSpec spec = base_domain(plan);
  LibvirtOptions options;
  DomainDisk disk;
  disk.backend = DiskBackend::kFile;
  if (!image.disk.empty()) {
    options.uefi = true;
    disk.path = (final_dir / "disk.raw").string();
    disk.frontend = "xvda";
  } else {
    spec.kernel = (final_dir / "vmlinuz").string();
    spec.ramdisk = (final_dir / "initrd.img").string();
    spec.root = "UUID=" + plan.identity.root_filesystem.to_string() + " ro";
    spec.extra = plan.recipe->image.kernel_cmdline.value;
    disk.path = (final_dir / "root.img").string();
    disk.frontend = "xvda";
  }
  spec.disks.push_back(disk);
  spec.vifs.push_back(DomainVif{});
  return write_libvirt_xml(spec, options);
}

// How an artifact's sha256 is had: taken as the assembly wrote the file,
// taken here, or left to publish (the whole-disk image, by default).
struct DigestSource {
  std::string known;
  bool take = true;
};

Result<ManifestArtifact> describe(const fs::path& dir, const std::string& name, DigestSource digest) {
  fs::path path = dir / name;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return fail_errno("stat", path.string(), errno);
  if (digest.known.empty() && digest.take) {
    KILN_ASSIGN(digest.known, file_digest_hex(path));
  }
  return ManifestArtifact{name, static_cast<uint64_t>(st.st_size), digest.known};
}

// Hashes the artifacts still to hash, on all cores.
Result<std::vector<ManifestArtifact>> describe_all(const fs::path& dir, const std::vector<std::string>& names,
                                                   const std::map<std::string, DigestSource>& sources) {
  std::vector<std::future<Result<ManifestArtifact>>> jobs;
  for (const std::string& name : names) {
    auto source = sources.find(name);
    jobs.push_back(std::async(std::launch::async, describe, dir, name,
                              source == sources.end() ? DigestSource{} : source->second));
  }
  std::vector<ManifestArtifact> out;
  for (auto& job : jobs) {
    auto artifact = job.get();
    if (!artifact) return std::unexpected(std::move(artifact).error());
    out.push_back(std::move(*artifact));
  }
  return out;
}

// The storage layout as built: volumes, LVM, encryption (never a key or a
// passphrase, nor the files they came from).
void describe_storage(const Plan& plan, const AssembledImage& image, ImageManifest& m) {
  for (const PlacedVolume& volume : image.volumes)
    m.volumes.push_back({volume.name, std::string(name_of(volume.filesystem)), volume.mountpoint, volume.label,
                         volume.uuid.to_string(), volume.offset, volume.size});
  for (const PartitionImage& partition : image.partition_images)
    m.partition_images.push_back({partition.file, partition.volume});
  if (image.lvm)
    m.lvm = ManifestLvm{image.lvm->vg,          image.lvm->vg_uuid,      image.lvm->pv_uuid,
                        image.lvm->extent_size, image.lvm->extent_count, image.lvm->pe_start};
  if (image.encryption) {
    const EncryptionInfo& e = *image.encryption;
    const StorageSection& storage = plan.recipe->storage;
    m.encryption = ManifestEncryption{
        e.type,   e.cipher, e.key_bits, e.sector_size, e.data_offset, e.keyslots, e.encrypted_bytes,
        e.method, storage.luks.present.value ? storage.luks.name.value : storage.dmcrypt.name.value, e.uuid};
  }
}

ImageManifest manifest_of(const Plan& plan, const AssembledImage& image, std::vector<ManifestArtifact> artifacts) {
  const Recipe& recipe = *plan.recipe;
  PlacedVolume root;
  for (const PlacedVolume& volume : image.volumes)
    if (volume.is_root()) root = volume;
  ImageManifest m;
  m.kiln_version = KILN_VERSION;
  m.recipe_file = recipe.file.filename().string();
  m.recipe_sha256 = recipe.hash;
  m.name = recipe.image.name.value;
  m.version = recipe.image.version.value;
  m.description = recipe.image.description.value;
  m.layout = name_of(recipe.storage.layout.value);
  m.architecture = plan.arch->dpkg;
  m.size = image.geometry.image_size;
  m.root_filesystem_type = name_of(root.filesystem);
  m.root_filesystem_uuid = root.uuid.to_string();
  m.root_filesystem_size = root.size;
  m.root_filesystem_label = root.label;
  for (const PlacedPartition& p : image.geometry.partitions)
    m.partitions.push_back({p.number, p.partition.name, std::string(gpt_type_guid(p.partition.type)),
                            p.partition.uuid.to_string(), p.offset, p.size});
  m.kernel = image.kernel_version;
  m.kernel_cmdline = image.kernel_command_line;
  m.memory_mib = recipe.output.memory.value / (1024 * 1024);
  m.vcpus = static_cast<int>(recipe.output.vcpus.value);
  if (image.geometry.esp) m.esp_volume_id = fat_volume_id_string(plan.identity.esp_volume_id);
  m.root_device = image.root_device;
  m.build_timestamp = plan.timestamp;
  m.reproducible = plan.reproducible;
  m.bootstrap_key = plan.source.key;
  m.customize_key = plan.in_image ? plan.in_image->key : "";
  for (const InstalledPackage& package : installed_packages(image.dpkg_status))
    m.packages.push_back({package.name, package.version, package.architecture});
  m.artifacts = std::move(artifacts);
  describe_storage(plan, image, m);
  return m;
}

}  // namespace

Result<FinalizedOutput> finalize_outputs(const Plan& plan, const AssembledImage& image, const fs::path& dir,
                                         const fs::path& final_dir, Reporter& reporter) {
  const Recipe& recipe = *plan.recipe;
  std::vector<std::string> names;
  if (!image.disk.empty()) names.push_back("disk.raw");
  for (const PartitionImage& partition : image.partition_images) names.push_back(partition.file);
  if (recipe.wants_output("kernel") && !image.kernel.empty()) {
    names.push_back("vmlinuz");
    names.push_back("initrd.img");
  } else {
    std::error_code ignored;
    fs::remove(dir / "vmlinuz", ignored);
    fs::remove(dir / "initrd.img", ignored);
  }
  if (recipe.wants_output("qcow2")) {
    reporter.note("disk.qcow2");
    KILN_TRY(convert_to_qcow2(image.disk, dir / "disk.qcow2"));
    names.push_back("disk.qcow2");
  }
  if (recipe.wants_output("xen")) {
    std::string name = recipe.image.name.value + ".xl.cfg";
    KILN_ASSIGN(std::string text, xen_config(plan, image, final_dir));
    KILN_TRY(write_file_atomic(dir / name, text));
    names.push_back(name);
  }
  if (recipe.wants_output("libvirt")) {
    std::string name = recipe.image.name.value + ".libvirt.xml";
    KILN_ASSIGN(std::string text, libvirt_domain(plan, image, final_dir));
    KILN_TRY(write_file_atomic(dir / name, text));
    names.push_back(name);
  }
  std::map<std::string, DigestSource> sources;
  for (const PartitionImage& partition : image.partition_images)
    if (!partition.sha256.empty()) sources[partition.file].known = partition.sha256;
  if (!image.disk_sha256.empty()) sources["disk.raw"].known = image.disk_sha256;
  if (!recipe.hashes_disk_at_bake())
    for (const char* whole_disk : {"disk.raw", "disk.qcow2", image.disk.empty() ? "root.img" : ""})
      if (*whole_disk) sources[whole_disk].take = false;
  reporter.note(recipe.hashes_disk_at_bake() ? fmt::format("sha256 of {} files", names.size())
                                             : "sha256 of the files but the whole-disk image (output.disk_sha256)");
  FinalizedOutput out;
  KILN_ASSIGN(std::vector<ManifestArtifact> artifacts, describe_all(dir, names, sources));
  out.manifest = manifest_of(plan, image, std::move(artifacts));
  KILN_TRY(write_file_atomic(dir / "manifest.json", write_image_manifest(out.manifest)));
  return out;
}

}  // namespace kiln
