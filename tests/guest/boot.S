/* Multiboot (v1) entry: the loader (QEMU -kernel) jumps here in 32-bit protected mode, paging off,
 * EAX = 0x2BADB002, EBX = physical address of the multiboot info. We install our own flat GDT (the loader's
 * may be gone once we touch memory), zero .bss, set up a stack and call guest_main(magic, info).
 * Interrupts stay disabled for the guest's whole life: everything is polled. */

#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003 /* bit 0: page-align modules, bit 1: give us memory info */

        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)

        .section .text
        .global _start
        .type _start, @function
_start:
        cli
        cld
        lgdt gdt_desc
        ljmp $0x08, $1f
1:      movw $0x10, %cx
        movw %cx, %ds
        movw %cx, %es
        movw %cx, %fs
        movw %cx, %gs
        movw %cx, %ss
        movl $stack_top, %esp
        /* zero .bss (keep EAX/EBX: magic and info pointer) */
        movl %eax, %esi
        movl $__bss_start, %edi
        movl $__bss_end, %ecx
        subl %edi, %ecx
        shrl $2, %ecx
        xorl %eax, %eax
        rep stosl
        pushl %ebx
        pushl %esi
        call guest_main
halt:   cli
        hlt
        jmp halt
        .size _start, . - _start

        .section .rodata
        .align 8
gdt:    .quad 0
        .quad 0x00cf9a000000ffff /* 0x08: code, base 0, limit 4 GiB, 32-bit */
        .quad 0x00cf92000000ffff /* 0x10: data, base 0, limit 4 GiB */
gdt_end:
gdt_desc:
        .word gdt_end - gdt - 1
        .long gdt

        .section .bss
        .align 16
stack:  .skip 16384
stack_top:

        .section .note.GNU-stack, "", @progbits
