import CLibCrypto
import Foundation

/// SHA-256 through OpenSSL's EVP interface, as lower-case hex.
enum SHA256 {
    static func hexDigest(of data: Data) -> String {
        var digest = [UInt8](repeating: 0, count: Int(CLibCrypto_EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let succeeded = data.withUnsafeBytes { bytes in
            EVP_Digest(bytes.baseAddress, bytes.count, &digest, &length, EVP_sha256(), nil)
        }
        // EVP_Digest fails only when OpenSSL cannot allocate a context.
        precondition(succeeded == 1, "OpenSSL EVP_Digest(SHA-256) failed")
        return digest.prefix(Int(length)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}
