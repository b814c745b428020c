/* COM1 (0x3f8), polled, 115200 8N1. Lines end in a bare "\n" so host-side logs parse line by line. */
#ifndef TANDEM_TESTS_GUEST_SERIAL_H
#define TANDEM_TESTS_GUEST_SERIAL_H

#include <stdint.h>

void serial_init(void);
void serial_putc(char c);
void serial_puts(const char* s);
void serial_putu(uint32_t v);
/* printf subset: %s %u %x (32-bit) and %%. */
void serial_printf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
