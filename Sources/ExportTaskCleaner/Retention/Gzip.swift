import CZlib

/// gzip through the system's zlib (docs/database.md, "Retention"): the archives are written
/// whole (one gzip member) and read back bounded, since an archive file is input like any other.
package enum Gzip {
    package struct Failure: Error, CustomStringConvertible, Equatable {
        package var description: String
    }

    /// `bytes` as one gzip member (zlib's default level).
    package static func compress(_ bytes: [UInt8]) throws(Failure) -> [UInt8] {
        var stream = z_stream()
        // windowBits 15 + 16: a gzip header and trailer rather than zlib's.
        guard deflateInit2_(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
                            zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Failure(description: "zlib: cannot start compressing")
        }
        defer { deflateEnd(&stream) }
        var input = bytes
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, UInt(bytes.count))) + 64)
        let result: Int32 = input.withUnsafeMutableBufferPointer { source in
            output.withUnsafeMutableBufferPointer { target in
                stream.next_in = source.baseAddress
                stream.avail_in = UInt32(source.count)
                stream.next_out = target.baseAddress
                stream.avail_out = UInt32(target.count)
                return deflate(&stream, Z_FINISH)
            }
        }
        guard result == Z_STREAM_END else { throw Failure(description: "zlib: compressing failed (\(result))") }
        output.removeSubrange(Int(stream.total_out)...)
        return output
    }

    /// The content of gzip data (members one after another, as `zcat` reads them), at most
    /// `limit` bytes: more, damaged or cut-off data is refused, never trapped on.
    package static func decompress(_ bytes: [UInt8], limit: Int) throws(Failure) -> [UInt8] {
        var stream = z_stream()
        guard inflateInit2_(&stream, 15 + 16, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Failure(description: "zlib: cannot start decompressing")
        }
        defer { inflateEnd(&stream) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var offset = 0
        var input = bytes
        while offset < input.count {
            let (status, consumed, produced) = input.withUnsafeMutableBufferPointer { source in
                chunk.withUnsafeMutableBufferPointer { target in
                    stream.next_in = source.baseAddress! + offset
                    stream.avail_in = UInt32(min(source.count - offset, Int(UInt32.max)))
                    stream.next_out = target.baseAddress
                    stream.avail_out = UInt32(target.count)
                    let before = stream.avail_in
                    let status = inflate(&stream, Z_NO_FLUSH)
                    return (status, Int(before - stream.avail_in), target.count - Int(stream.avail_out))
                }
            }
            offset += consumed
            guard output.count <= limit - produced else {
                throw Failure(description: "more than \(limit) bytes once decompressed")
            }
            output.append(contentsOf: chunk[0..<produced])
            switch status {
            case Z_STREAM_END:
                // Another member may follow.
                guard offset < input.count else { return output }
                guard inflateReset(&stream) == Z_OK else { throw Failure(description: "zlib: cannot read the next member") }
            case Z_OK:
                continue
            case Z_BUF_ERROR where produced > 0 || consumed > 0:
                continue
            default:
                throw Failure(description: "not valid gzip data (zlib \(status))")
            }
        }
        throw Failure(description: "gzip data cut off before its end")
    }
}
