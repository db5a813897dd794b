/*
 * A fault-injecting PKCS#11 module for tests: it loads the real module named by
 * KEYWARDEN_FAULT_MODULE (e.g. libsofthsm2.so), forwards every call to it, and fails the calls a
 * control file names with the CK_RV it names, without forwarding them (so the real module's state
 * is what a token that failed that call half-way would leave: a C_Sign failed here leaves the
 * operation active in SoftHSM2, as a real device error can).
 *
 * The control file (KEYWARDEN_FAULT_FILE) is re-read whenever its inode, size or mtime changes. One rule
 * per line:
 *
 *     <function> <rv> [<count>]
 *
 * <function> is a PKCS#11 function name (C_Sign) or * for every wrapped function; <rv> a CKR_
 * name this file knows or a number (0x30); <count> how many matching calls fail (default: every
 * call while the line is there). An empty or missing file injects nothing. Each time a rule fires
 * the shim appends "<function> <rv>\n" to KEYWARDEN_FAULT_LOG when that is set, so a test can see
 * that its fault was really hit.
 *
 * Built by test/helpers/fault-pkcs11.ts with the PKCS#11 headers pkcs11js ships.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CK_PTR *
#define CK_DECLARE_FUNCTION(returnType, name) returnType name
#define CK_DECLARE_FUNCTION_POINTER(returnType, name) returnType(*name)
#define CK_CALLBACK_FUNCTION(returnType, name) returnType(*name)
#ifndef NULL_PTR
#define NULL_PTR 0
#endif
#include "pkcs11.h"

#define MAX_RULES 32

struct rule {
  char fn[64];
  CK_RV rv;
  long remaining; /* -1: unlimited */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct rule rules[MAX_RULES];
static int nrules = 0;
static off_t seen_size = -1;
static ino_t seen_ino = 0;
static struct timespec seen_mtime;
static CK_FUNCTION_LIST_PTR real = NULL;
static CK_FUNCTION_LIST shim;

static const struct {
  const char *name;
  CK_RV rv;
} known_rvs[] = {
    {"CKR_GENERAL_ERROR", CKR_GENERAL_ERROR},
    {"CKR_FUNCTION_FAILED", CKR_FUNCTION_FAILED},
    {"CKR_DEVICE_ERROR", CKR_DEVICE_ERROR},
    {"CKR_DEVICE_MEMORY", CKR_DEVICE_MEMORY},
    {"CKR_DEVICE_REMOVED", CKR_DEVICE_REMOVED},
    {"CKR_TOKEN_NOT_PRESENT", CKR_TOKEN_NOT_PRESENT},
    {"CKR_SESSION_HANDLE_INVALID", CKR_SESSION_HANDLE_INVALID},
    {"CKR_SESSION_CLOSED", CKR_SESSION_CLOSED},
    {"CKR_USER_NOT_LOGGED_IN", CKR_USER_NOT_LOGGED_IN},
    {"CKR_OPERATION_ACTIVE", CKR_OPERATION_ACTIVE},
    {"CKR_OBJECT_HANDLE_INVALID", CKR_OBJECT_HANDLE_INVALID},
    {"CKR_KEY_HANDLE_INVALID", CKR_KEY_HANDLE_INVALID},
    {"CKR_PIN_INCORRECT", CKR_PIN_INCORRECT},
    {"CKR_CRYPTOKI_NOT_INITIALIZED", CKR_CRYPTOKI_NOT_INITIALIZED},
};

static CK_RV parse_rv(const char *s) {
  for (size_t i = 0; i < sizeof known_rvs / sizeof known_rvs[0]; i++)
    if (strcmp(s, known_rvs[i].name) == 0) return known_rvs[i].rv;
  return (CK_RV)strtoul(s, NULL, 0);
}

/* Re-reads the control file when it changed; call with the lock held. */
static void reload(void) {
  const char *path = getenv("KEYWARDEN_FAULT_FILE");
  struct stat st;
  if (!path || stat(path, &st) != 0) {
    nrules = 0;
    seen_size = -1;
    return;
  }
  if (st.st_ino == seen_ino && st.st_size == seen_size && st.st_mtim.tv_sec == seen_mtime.tv_sec &&
      st.st_mtim.tv_nsec == seen_mtime.tv_nsec)
    return;
  seen_ino = st.st_ino;
  seen_size = st.st_size;
  seen_mtime = st.st_mtim;
  nrules = 0;
  FILE *f = fopen(path, "r");
  if (!f) return;
  char line[256];
  while (nrules < MAX_RULES && fgets(line, sizeof line, f)) {
    char fn[64], rv[64];
    long count = -1;
    int n = sscanf(line, "%63s %63s %ld", fn, rv, &count);
    if (n < 2) continue;
    strcpy(rules[nrules].fn, fn);
    rules[nrules].rv = parse_rv(rv);
    rules[nrules].remaining = n == 3 ? count : -1;
    nrules++;
  }
  fclose(f);
}

/* CKR_OK, or the rv a rule injects for this call of `fn`. */
static CK_RV fault(const char *fn) {
  CK_RV out = CKR_OK;
  pthread_mutex_lock(&lock);
  reload();
  for (int i = 0; i < nrules; i++) {
    struct rule *r = &rules[i];
    if (r->remaining == 0) continue;
    if (strcmp(r->fn, "*") != 0 && strcmp(r->fn, fn) != 0) continue;
    if (r->remaining > 0) r->remaining--;
    out = r->rv;
    break;
  }
  pthread_mutex_unlock(&lock);
  if (out != CKR_OK) {
    const char *logpath = getenv("KEYWARDEN_FAULT_LOG");
    FILE *log = logpath ? fopen(logpath, "a") : NULL;
    if (log) {
      fprintf(log, "%s 0x%lx\n", fn, (unsigned long)out);
      fclose(log);
    }
  }
  return out;
}

#define WRAP(name, params, args)              \
  static CK_RV shim_##name params {           \
    CK_RV rv = fault(#name);                  \
    if (rv != CKR_OK) return rv;              \
    return real->name args;                   \
  }

WRAP(C_GetSlotList, (CK_BBOOL a, CK_SLOT_ID_PTR b, CK_ULONG_PTR c), (a, b, c))
WRAP(C_GetTokenInfo, (CK_SLOT_ID a, CK_TOKEN_INFO_PTR b), (a, b))
WRAP(C_OpenSession, (CK_SLOT_ID a, CK_FLAGS b, CK_VOID_PTR c, CK_NOTIFY d, CK_SESSION_HANDLE_PTR e),
     (a, b, c, d, e))
WRAP(C_GetSessionInfo, (CK_SESSION_HANDLE a, CK_SESSION_INFO_PTR b), (a, b))
WRAP(C_Login, (CK_SESSION_HANDLE a, CK_USER_TYPE b, CK_UTF8CHAR_PTR c, CK_ULONG d), (a, b, c, d))
WRAP(C_FindObjectsInit, (CK_SESSION_HANDLE a, CK_ATTRIBUTE_PTR b, CK_ULONG c), (a, b, c))
WRAP(C_FindObjects, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE_PTR b, CK_ULONG c, CK_ULONG_PTR d),
     (a, b, c, d))
WRAP(C_GetAttributeValue, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d),
     (a, b, c, d))
WRAP(C_SignInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c), (a, b, c))
WRAP(C_Sign, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e),
     (a, b, c, d, e))
WRAP(C_GenerateKeyPair,
     (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d, CK_ATTRIBUTE_PTR e,
      CK_ULONG f, CK_OBJECT_HANDLE_PTR g, CK_OBJECT_HANDLE_PTR h),
     (a, b, c, d, e, f, g, h))
WRAP(C_CreateObject, (CK_SESSION_HANDLE a, CK_ATTRIBUTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE_PTR d),
     (a, b, c, d))
WRAP(C_DestroyObject, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b), (a, b))

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out) {
  if (!out) return CKR_ARGUMENTS_BAD;
  if (!real) {
    const char *path = getenv("KEYWARDEN_FAULT_MODULE");
    if (!path) return CKR_GENERAL_ERROR;
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) return CKR_GENERAL_ERROR;
    CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
    if (!get || get(&real) != CKR_OK || !real) return CKR_GENERAL_ERROR;
    /* Every call goes to the real module, but these through the fault check first. */
    shim = *real;
    shim.C_GetSlotList = shim_C_GetSlotList;
    shim.C_GetTokenInfo = shim_C_GetTokenInfo;
    shim.C_OpenSession = shim_C_OpenSession;
    shim.C_GetSessionInfo = shim_C_GetSessionInfo;
    shim.C_Login = shim_C_Login;
    shim.C_FindObjectsInit = shim_C_FindObjectsInit;
    shim.C_FindObjects = shim_C_FindObjects;
    shim.C_GetAttributeValue = shim_C_GetAttributeValue;
    shim.C_SignInit = shim_C_SignInit;
    shim.C_Sign = shim_C_Sign;
    shim.C_GenerateKeyPair = shim_C_GenerateKeyPair;
    shim.C_CreateObject = shim_C_CreateObject;
    shim.C_DestroyObject = shim_C_DestroyObject;
  }
  *out = &shim;
  return CKR_OK;
}
