// Reader of stored zip archives (see wico/io/zip_archive.h). The layout follows PKWARE's
// APPNOTE: end of central directory (EOCD), optional zip64 EOCD and its locator, central
// directory file headers, local file headers.
#include "wico/io/zip_archive.h"

#include <algorithm>
#include <limits>

#include <zlib.h>

#include "little_endian.h"
#include "wico/core/error.h"

namespace wico::io {

namespace {

constexpr std::uint32_t kLocalHeader = 0x04034b50;
constexpr std::uint32_t kCentralHeader = 0x02014b50;
constexpr std::uint32_t kEndOfDirectory = 0x06054b50;
constexpr std::uint32_t kZip64EndOfDirectory = 0x06064b50;
constexpr std::uint32_t kZip64Locator = 0x07064b50;
constexpr std::size_t kEocdSize = 22;
constexpr std::size_t kCentralHeaderSize = 46;
constexpr std::size_t kLocalHeaderSize = 30;

}  // namespace

bool ZipArchive::looks_like_zip(std::string_view bytes) {
  return bytes.size() >= 4 && read_le(bytes, 0, 4) == kLocalHeader;
}

void ZipArchive::fail(std::uint64_t offset, const std::string& what) const {
  throw Error(detail::concat("malformed zip archive ", file_->path().string(), " at byte offset ",
                             offset, ": ", what));
}

ZipArchive::ZipArchive(std::shared_ptr<const MappedFile> file) : file_(std::move(file)) {
  const std::string_view bytes = file_->bytes();
  const std::size_t n = bytes.size();
  if (n < kEocdSize) fail(n, "file too short for an end-of-central-directory record");

  // The EOCD ends the file, followed only by a comment of at most 65535 bytes.
  std::size_t eocd = std::string_view::npos;
  const std::size_t lowest = n > kEocdSize + 0xFFFF ? n - kEocdSize - 0xFFFF : 0;
  for (std::size_t pos = n - kEocdSize + 1; pos-- > lowest;) {
    if (read_le(bytes, pos, 4) == kEndOfDirectory && pos + kEocdSize + read_le(bytes, pos + 20, 2) == n) {
      eocd = pos;
      break;
    }
  }
  if (eocd == std::string_view::npos) {
    fail(n, "no end-of-central-directory record (truncated or not a zip file)");
  }
  std::uint64_t count = read_le(bytes, eocd + 10, 2);
  std::uint64_t directory_size = read_le(bytes, eocd + 12, 4);
  std::uint64_t directory_offset = read_le(bytes, eocd + 16, 4);
  if (read_le(bytes, eocd + 4, 2) != 0 || read_le(bytes, eocd + 6, 2) != 0) {
    fail(eocd, "multi-disk archives are not supported");
  }
  // torch writes zip64 records even for tiny files; their values take precedence.
  if (eocd >= 20 && read_le(bytes, eocd - 20, 4) == kZip64Locator) {
    const std::uint64_t record = read_le(bytes, eocd - 20 + 8, 8);
    if (record > n - 56 || n < 56 || read_le(bytes, record, 4) != kZip64EndOfDirectory) {
      fail(eocd - 20, "the zip64 locator points to no zip64 end-of-central-directory record");
    }
    count = read_le(bytes, record + 32, 8);
    directory_size = read_le(bytes, record + 40, 8);
    directory_offset = read_le(bytes, record + 48, 8);
  }
  if (directory_offset > n || directory_size > n - directory_offset) {
    fail(eocd, detail::concat("central directory (offset ", directory_offset, ", ",
                              directory_size, " bytes) lies outside the file of ", n, " bytes"));
  }
  if (count > directory_size / kCentralHeaderSize) {
    fail(eocd, detail::concat(count, " entries cannot fit in a central directory of ",
                              directory_size, " bytes"));
  }

  entries_.reserve(count);
  std::size_t pos = directory_offset;
  const std::size_t directory_end = directory_offset + directory_size;
  for (std::uint64_t i = 0; i < count; ++i) {
    if (directory_end - pos < kCentralHeaderSize || read_le(bytes, pos, 4) != kCentralHeader) {
      fail(pos, detail::concat("expected central directory header ", i, " of ", count));
    }
    const auto flags = read_le(bytes, pos + 8, 2);
    const auto method = read_le(bytes, pos + 10, 2);
    ZipEntry entry;
    entry.crc32 = static_cast<std::uint32_t>(read_le(bytes, pos + 16, 4));
    std::uint64_t compressed = read_le(bytes, pos + 20, 4);
    std::uint64_t size = read_le(bytes, pos + 24, 4);
    const std::size_t name_length = read_le(bytes, pos + 28, 2);
    const std::size_t extra_length = read_le(bytes, pos + 30, 2);
    const std::size_t comment_length = read_le(bytes, pos + 32, 2);
    std::uint64_t local = read_le(bytes, pos + 42, 4);
    if (directory_end - pos - kCentralHeaderSize < name_length + extra_length + comment_length) {
      fail(pos, "central directory header runs past the directory");
    }
    entry.name.assign(bytes.substr(pos + kCentralHeaderSize, name_length));
    // Zip64 extended information: the 64-bit values of the fields saturated at 0xFFFFFFFF.
    std::size_t extra = pos + kCentralHeaderSize + name_length;
    const std::size_t extra_end = extra + extra_length;
    while (extra_end - extra >= 4) {
      const auto id = read_le(bytes, extra, 2);
      const std::size_t length = read_le(bytes, extra + 2, 2);
      if (extra_end - extra - 4 < length) fail(extra, "zip extra field runs past its header");
      if (id == 0x0001) {
        std::size_t field = extra + 4;
        auto take = [&](std::uint64_t& value) {
          if (value != 0xFFFFFFFFu) return;
          if (field + 8 > extra + 4 + length) fail(field, "short zip64 extra field");
          value = read_le(bytes, field, 8);
          field += 8;
        };
        take(size);
        take(compressed);
        take(local);
      }
      extra += 4 + length;
    }
    entry.method = static_cast<std::uint16_t>(method);
    if ((flags & 1) != 0) fail(pos, detail::concat("entry '", entry.name, "' is encrypted"));
    if (method == 0 && compressed != size) {
      fail(pos, detail::concat("stored entry '", entry.name, "' has compressed size ", compressed,
                               " != size ", size));
    }
    if (local > n || n - local < kLocalHeaderSize || read_le(bytes, local, 4) != kLocalHeader) {
      fail(local, detail::concat("expected the local header of entry '", entry.name, "'"));
    }
    const std::uint64_t data =
        local + kLocalHeaderSize + read_le(bytes, local + 26, 2) + read_le(bytes, local + 28, 2);
    if (data > n || compressed > n - data) {
      fail(local, detail::concat("entry '", entry.name, "' (", compressed, " bytes at offset ",
                                 data, ") runs past the end of the file (", n, " bytes)"));
    }
    entry.data_offset = data;
    entry.size = compressed;
    entries_.push_back(std::move(entry));
    pos += kCentralHeaderSize + name_length + extra_length + comment_length;
  }
}

const ZipEntry* ZipArchive::find(std::string_view name) const {
  const auto it = std::find_if(entries_.begin(), entries_.end(),
                               [&](const ZipEntry& e) { return e.name == name; });
  return it == entries_.end() ? nullptr : &*it;
}

const ZipEntry& ZipArchive::at(std::string_view name) const {
  if (const ZipEntry* entry = find(name)) return *entry;
  throw Error(detail::concat("zip archive ", file_->path().string(), " has no entry '", name,
                             "'"));
}

std::string_view ZipArchive::data(const ZipEntry& entry) const {
  if (entry.method != 0) {
    fail(entry.data_offset, detail::concat("entry '", entry.name, "' is compressed (method ",
                                           entry.method, "); only stored entries are read"));
  }
  return file_->bytes().substr(entry.data_offset, entry.size);
}

void ZipArchive::verify_checksums() const {
  for (const ZipEntry& entry : entries_) {
    if (entry.method != 0) continue;  // compressed: its inflater checks it
    const std::string_view bytes = data(entry);
    // zlib's crc32 takes at most 4 GB per call.
    uLong crc = ::crc32(0L, Z_NULL, 0);
    for (std::size_t done = 0; done < bytes.size();) {
      const std::size_t n = std::min<std::size_t>(bytes.size() - done, 1u << 30);
      crc = ::crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + done),
                    static_cast<uInt>(n));
      done += n;
    }
    if (static_cast<std::uint32_t>(crc) != entry.crc32) {
      fail(entry.data_offset, "entry '" + entry.name + "' does not match its CRC-32 (the file "
                              "is corrupt)");
    }
  }
}

}  // namespace wico::io
