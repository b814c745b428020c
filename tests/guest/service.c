#include "service.h"

#include "disk.h"
#include "guest_layout.h"
#include "serial.h"

#define SCAN_SECTORS 8u
#define TOKEN_MAX 64u

enum record_kind { RECORD_EMPTY, RECORD_VALID, RECORD_DAMAGED };

static volatile uint32_t* const svc = (volatile uint32_t*)(uintptr_t)TANDEM_GUEST_SVC_BASE;
static int have_nic, have_disk, broken;
static uint32_t sectors;
static uint32_t disk_last; /* last record seen on the disk (boot scan, own writes, periodic checks) */
static uint32_t scan_buf[SCAN_SECTORS * TANDEM_GUEST_SECTOR_SIZE / 4u] __attribute__((aligned(4096)));
static uint32_t record_buf[TANDEM_GUEST_SECTOR_SIZE / 4u] __attribute__((aligned(512)));

static enum record_kind classify(const uint32_t* s, uint32_t k) {
  if (s[TANDEM_GUEST_REC_W_MAGIC] == TANDEM_GUEST_REC_MAGIC && s[TANDEM_GUEST_REC_W_VALUE] == k &&
      s[TANDEM_GUEST_REC_W_CHECK] == tandem_guest_rec_check(k) && s[TANDEM_GUEST_REC_W_TAIL] == k)
    return RECORD_VALID;
  for (uint32_t i = 0; i < TANDEM_GUEST_SECTOR_SIZE / 4u; ++i)
    if (s[i]) return RECORD_DAMAGED;
  return RECORD_EMPTY;
}

static void report_broken(uint32_t d, uint32_t r, uint32_t damaged, const uint32_t* s) {
  broken = 1;
  if (damaged)
    serial_printf("INVARIANT BROKEN disk=%u ram=%u damaged sector %u: %x %u %x\n", d, r, damaged, s[0], s[1], s[2]);
  else
    serial_printf("INVARIANT BROKEN disk=%u ram=%u\n", d, r);
}

/* The log from record `from` on (records before it known good): returns the last record of the intact prefix;
 * *damaged is the first sector that is neither the next record nor empty (0: none), its words in *damaged_words. */
static uint32_t scan(uint32_t from, uint32_t* damaged, const uint32_t** damaged_words) {
  *damaged = 0;
  for (uint32_t k = from; k < sectors; k += SCAN_SECTORS) {
    uint32_t n = sectors - k < SCAN_SECTORS ? sectors - k : SCAN_SECTORS;
    if (!disk_read(k, scan_buf, n)) {
      serial_printf("tandem-guest disk: read error at sector %u\n", k);
      *damaged = k;
      *damaged_words = scan_buf;
      return k - 1u;
    }
    for (uint32_t i = 0; i < n; ++i) {
      const uint32_t* s = scan_buf + i * (TANDEM_GUEST_SECTOR_SIZE / 4u);
      enum record_kind kind = classify(s, k + i);
      if (kind == RECORD_EMPTY) return k + i - 1u;
      if (kind == RECORD_DAMAGED) {
        *damaged = k + i;
        *damaged_words = s;
        return k + i - 1u;
      }
    }
  }
  return sectors ? sectors - 1u : 0;
}

/* Between requests (pending == 0) the disk's last record must be exactly reqs: sector reqs holds record reqs and
 * sector reqs + 1 is empty. Anything else means RAM and disk come from different instants. */
static void check_disk(uint32_t r) {
  uint32_t n = r + 1u < sectors ? 2u : 1u;
  if (!disk_read(r, scan_buf, n)) {
    serial_printf("tandem-guest disk: read error at sector %u\n", r);
    return;
  }
  const uint32_t* words = 0;
  uint32_t damaged = 0, d;
  const uint32_t* next = scan_buf + TANDEM_GUEST_SECTOR_SIZE / 4u;
  if (r > 0 && classify(scan_buf, r) != RECORD_VALID) {
    d = scan(1, &damaged, &words); /* the record of the last request is gone: how far does the log go? */
  } else if (n == 2u && classify(next, r + 1u) == RECORD_VALID) {
    d = scan(r + 1u, &damaged, &words); /* the disk is ahead of RAM */
  } else if (n == 2u && classify(next, r + 1u) == RECORD_DAMAGED) {
    d = r, damaged = r + 1u, words = next;
  } else {
    disk_last = r;
    return;
  }
  disk_last = d;
  report_broken(d, r, damaged, words);
}

static char* put_text(char* o, char* end, const char* s) {
  while (*s && o < end) *o++ = *s++;
  return o;
}

static char* put_uint(char* o, char* end, uint32_t v) {
  char digits[10];
  int n = 0;
  do digits[n++] = (char)('0' + v % 10u), v /= 10u;
  while (v);
  while (n && o < end) *o++ = digits[--n];
  return o;
}

/* The request's "id=<token>", echoed in the reply so a client can match replies to requests. */
static const uint8_t* find_token(const uint8_t* p, uint32_t len, uint32_t* token_len) {
  for (uint32_t i = 0; i + 3u <= len; ++i) {
    if ((i == 0 || p[i - 1] == ' ') && p[i] == 'i' && p[i + 1] == 'd' && p[i + 2] == '=') {
      uint32_t j = i + 3u;
      while (j < len && j - (i + 3u) < TOKEN_MAX && p[j] > ' ' && p[j] < 0x7f) ++j;
      *token_len = j - (i + 3u);
      return p + i + 3u;
    }
  }
  *token_len = 0;
  return 0;
}

/* One request: the record goes to the disk and completes before RAM counts it and before the reply leaves, so a
 * reply the client saw is always on the disk (see README.md for the window this leaves). */
static uint32_t handle_request(const uint8_t* payload, uint32_t len, char* reply, uint32_t cap) {
  uint32_t token_len;
  const uint8_t* token = find_token(payload, len, &token_len);
  char* o = reply;
  char* end = reply + cap - 1u;
  uint32_t n = svc[TANDEM_GUEST_SVC_W_REQS] + 1u;
  const char* error = 0;
  if (have_disk && broken) {
    error = "error=disk-broken";
  } else if (have_disk && n >= sectors) {
    error = "error=disk-full";
  } else {
    svc[TANDEM_GUEST_SVC_W_PENDING] = n;
    if (have_disk) {
      record_buf[TANDEM_GUEST_REC_W_MAGIC] = TANDEM_GUEST_REC_MAGIC;
      record_buf[TANDEM_GUEST_REC_W_VALUE] = n;
      record_buf[TANDEM_GUEST_REC_W_CHECK] = tandem_guest_rec_check(n);
      record_buf[TANDEM_GUEST_REC_W_TAIL] = n;
      if (!disk_write(n, record_buf, 1)) error = "error=disk-io";
    }
    if (!error) {
      if (have_disk) disk_last = n;
      svc[TANDEM_GUEST_SVC_W_REQS] = n;
      svc[TANDEM_GUEST_SVC_W_CHECK] = tandem_guest_svc_check(n);
    }
    svc[TANDEM_GUEST_SVC_W_PENDING] = 0;
  }
  if (error) {
    o = put_text(o, end, error);
  } else {
    o = put_text(o, end, "reply=");
    o = put_uint(o, end, n);
  }
  if (token) {
    o = put_text(o, end, " id=");
    for (uint32_t i = 0; i < token_len && o < end; ++i) *o++ = (char)token[i];
  }
  *o++ = '\n';
  return (uint32_t)(o - reply);
}

void service_init(const struct service_config* cfg) {
  have_disk = disk_init();
  uint32_t reqs = 0;
  if (have_disk) {
    sectors = disk_sectors();
    uint32_t damaged;
    const uint32_t* words = 0;
    reqs = disk_last = scan(1, &damaged, &words);
    serial_printf("tandem-guest disk: %u records\n", reqs);
    if (damaged) report_broken(reqs, reqs, damaged, words);
  }
  svc[TANDEM_GUEST_SVC_W_MAGIC] = TANDEM_GUEST_SVC_MAGIC;
  svc[TANDEM_GUEST_SVC_W_REQS] = reqs;
  svc[TANDEM_GUEST_SVC_W_CHECK] = tandem_guest_svc_check(reqs);
  svc[TANDEM_GUEST_SVC_W_PENDING] = 0;
  struct net_config net = {cfg->ip, cfg->port, handle_request};
  have_nic = net_init(&net);
  svc[TANDEM_GUEST_SVC_W_DEVICES] = (have_nic ? TANDEM_GUEST_SVC_NIC : 0u) | (have_disk ? TANDEM_GUEST_SVC_DISK : 0u);
}

void service_status(void) {
  if (!have_nic && !have_disk) return;
  uint32_t r = svc[TANDEM_GUEST_SVC_W_REQS];
  if (!broken && (svc[TANDEM_GUEST_SVC_W_MAGIC] != TANDEM_GUEST_SVC_MAGIC ||
                  svc[TANDEM_GUEST_SVC_W_CHECK] != tandem_guest_svc_check(r) || svc[TANDEM_GUEST_SVC_W_PENDING])) {
    broken = 1;
    serial_printf("INVARIANT BROKEN service page: magic %x reqs %u check %x pending %u\n",
                  svc[TANDEM_GUEST_SVC_W_MAGIC], r, svc[TANDEM_GUEST_SVC_W_CHECK], svc[TANDEM_GUEST_SVC_W_PENDING]);
  }
  if (have_disk && !broken) check_disk(r);
  const char* verdict = broken ? "INVARIANT BROKEN" : "ok";
  if (have_disk)
    serial_printf("reqs=%u disk=%u %s\n", r, disk_last, verdict);
  else
    serial_printf("reqs=%u disk=none %s\n", r, verdict);
}
