// The key reference decoder (provider-decoder(7)): a PEM file labelled
// "DEVID KEY REFERENCE" stands for a chip key, so that programs that only
// accept key files (-key FILE) use keys in the chip. The file holds the
// `devid:` URI, nothing secret.
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <cstring>

#include "provider/internal.h"
#include "provider/key_uri.h"

namespace devid::provider {

namespace {

constexpr char kLabel[] = "DEVID KEY REFERENCE";

struct DecoderContext {
  ProviderContext* prov = nullptr;
};

void* NewContext(void* provctx) {
  auto* ctx = new DecoderContext;
  ctx->prov = static_cast<ProviderContext*>(provctx);
  return ctx;
}

void FreeContext(void* c) { delete static_cast<DecoderContext*>(c); }

int DoesSelection(void*, int selection) {
  return selection == 0 || (selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0 ? 1 : 0;
}

// Stage 1 (input PEM): a "DEVID KEY REFERENCE" block becomes its DER body,
// marked with the structure stage 2 takes; anything else is not ours.
int DecodePem(void* c, OSSL_CORE_BIO* cin, int, OSSL_CALLBACK* data_cb, void* data_cbarg,
              OSSL_PASSPHRASE_CALLBACK*, void*) {
  auto* ctx = static_cast<DecoderContext*>(c);
  crypto::UniquePtr<BIO> in(BIO_new_from_core_bio(ctx->prov->core.get(), cin));
  if (!in) return 0;
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* data = nullptr;
  long length = 0;
  ERR_set_mark();
  if (PEM_read_bio(in.get(), &name, &header, &data, &length) <= 0) {
    ERR_pop_to_mark();  // our attempt's errors only; the caller's stay
    return 1;           // carry on with the other decoders
  }
  ERR_clear_last_mark();
  crypto::UniquePtr<char> name_owner(name);
  crypto::UniquePtr<char> header_owner(header);
  crypto::UniquePtr<unsigned char> data_owner(data);
  if (std::strcmp(name, kLabel) != 0) return 1;
  char structure[] = "devid-key-reference";
  char data_type[] = "EC";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, data, static_cast<size_t>(length)),
      OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_STRUCTURE, structure, 0),
      OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE, data_type, 0),
      OSSL_PARAM_construct_end()};
  return data_cb(params, data_cbarg);
}

// Stage 2 (input DER, structure devid-key-reference): the URI, then the chip key.
int DecodeDer(void* c, OSSL_CORE_BIO* cin, int, OSSL_CALLBACK* data_cb, void* data_cbarg,
              OSSL_PASSPHRASE_CALLBACK*, void*) {
  auto* ctx = static_cast<DecoderContext*>(c);
  crypto::UniquePtr<BIO> in(BIO_new_from_core_bio(ctx->prov->core.get(), cin));
  if (!in) return 0;
  Bytes der(kMaxKeyUri + 8);
  size_t got = 0;
  if (BIO_read_ex(in.get(), der.data(), der.size(), &got) != 1) return 1;
  der.resize(got);
  auto uri = ParseKeyReferenceDer(der);
  if (!uri.ok() || !uri->starts_with("devid:")) return 1;
  auto key = LoadChipKey(ctx->prov, *uri);
  if (!key.ok()) {
    RaiseError(ctx->prov, key.error());
    return 0;
  }
  return PassKeyReference(*key, data_cb, data_cbarg);
}

// The file store (another provider's) cannot load our reference; it asks us to
// export the object into the key management it found. A chip key goes by its
// URI, which this provider's key management turns back into the chip key.
int ExportObject(void*, const void* reference, size_t reference_size, OSSL_CALLBACK* export_cb,
                 void* export_cbarg) {
  if (reference == nullptr || reference_size != sizeof(Key*)) return 0;
  const Key* key = nullptr;
  std::memcpy(&key, reference, sizeof key);
  if (key->uri.empty()) return 0;
  char* group = const_cast<char*>(GroupName(key->curve));
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                        const_cast<uint8_t*>(key->point.data()), key->point.size()),
      OSSL_PARAM_construct_utf8_string(kUriParam, const_cast<char*>(key->uri.c_str()), 0),
      OSSL_PARAM_construct_end()};
  return export_cb(params, export_cbarg);
}

}  // namespace

Result<std::string> KeyReferencePem(const std::string& uri) {
  DEVID_ASSIGN_OR_RETURN(Bytes der, EncodeKeyReferenceDer(uri));
  crypto::UniquePtr<BIO> out(BIO_new(BIO_s_mem()));
  if (!out ||
      PEM_write_bio(out.get(), kLabel, "", der.data(), static_cast<long>(der.size())) <= 0) {
    return MakeError(ErrorCode::kCrypto, "writing the key reference PEM");
  }
  char* text = nullptr;
  long size = BIO_get_mem_data(out.get(), &text);
  return std::string(text, static_cast<size_t>(size));
}

const OSSL_DISPATCH kPemDecoderFunctions[] = {{OSSL_FUNC_DECODER_NEWCTX, Fn(NewContext)},
                                              {OSSL_FUNC_DECODER_FREECTX, Fn(FreeContext)},
                                              {OSSL_FUNC_DECODER_DOES_SELECTION, Fn(DoesSelection)},
                                              {OSSL_FUNC_DECODER_DECODE, Fn(DecodePem)},
                                              {0, nullptr}};
const OSSL_DISPATCH kDecoderFunctions[] = {{OSSL_FUNC_DECODER_NEWCTX, Fn(NewContext)},
                                           {OSSL_FUNC_DECODER_FREECTX, Fn(FreeContext)},
                                           {OSSL_FUNC_DECODER_DOES_SELECTION, Fn(DoesSelection)},
                                           {OSSL_FUNC_DECODER_DECODE, Fn(DecodeDer)},
                                           {OSSL_FUNC_DECODER_EXPORT_OBJECT, Fn(ExportObject)},
                                           {0, nullptr}};

}  // namespace devid::provider
