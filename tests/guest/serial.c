#include "serial.h"

#include <stdarg.h>

#include "io.h"

#define COM1 0x3f8

void serial_init(void) {
  outb(COM1 + 1, 0x00); /* no interrupts */
  outb(COM1 + 3, 0x80); /* DLAB */
  outb(COM1 + 0, 0x01); /* divisor 1: 115200 */
  outb(COM1 + 1, 0x00);
  outb(COM1 + 3, 0x03); /* 8N1 */
  outb(COM1 + 2, 0x07); /* FIFO on, cleared */
  outb(COM1 + 4, 0x03); /* DTR, RTS */
}

void serial_putc(char c) {
  /* Bounded wait for an empty transmit holding register: QEMU's UART is always ready, but never hang. */
  for (int i = 0; i < 100000 && !(inb(COM1 + 5) & 0x20); ++i) cpu_relax();
  outb(COM1, (uint8_t)c);
}

void serial_puts(const char* s) {
  while (*s) serial_putc(*s++);
}

static void put_unsigned(uint32_t v, uint32_t base) {
  char buf[12];
  int n = 0;
  do {
    uint32_t d = v % base;
    buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
    v /= base;
  } while (v);
  while (n) serial_putc(buf[--n]);
}

void serial_putu(uint32_t v) { put_unsigned(v, 10); }

void serial_printf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  for (const char* p = fmt; *p; ++p) {
    if (*p != '%') {
      serial_putc(*p);
      continue;
    }
    switch (*++p) {
      case 's': serial_puts(va_arg(ap, const char*)); break;
      case 'u': put_unsigned(va_arg(ap, uint32_t), 10); break;
      case 'x': put_unsigned(va_arg(ap, uint32_t), 16); break;
      case '%': serial_putc('%'); break;
      case '\0': --p; break;
      default: serial_putc('?'); break;
    }
  }
  va_end(ap);
}
