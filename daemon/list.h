/*
 * list.h - an intrusive doubly linked list, for every list of the daemon.
 *
 * Owns: nothing; a struct list_node is embedded in the element, and a list is
 * a struct list_node used as its head (circular: an empty list points at
 * itself). A node not on any list has NULL links. Not thread-safe: each list
 * belongs to one thread (the loop's, unless its owner says otherwise).
 */
#ifndef GRANARY_LIST_H
#define GRANARY_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list_node {
	struct list_node *prev, *next;
};

static inline void list_init(struct list_node *head)
{
	head->prev = head->next = head;
}

static inline bool list_empty(const struct list_node *head)
{
	return head->next == head;
}

/* Is @node on a list? (A node is off every list until added, and after list_del.) */
static inline bool list_linked(const struct list_node *node)
{
	return node->next != NULL;
}

static inline void list_insert(struct list_node *prev, struct list_node *next,
			       struct list_node *node)
{
	node->prev = prev;
	node->next = next;
	prev->next = node;
	next->prev = node;
}

static inline void list_add_head(struct list_node *head, struct list_node *node)
{
	list_insert(head, head->next, node);
}

static inline void list_add_tail(struct list_node *head, struct list_node *node)
{
	list_insert(head->prev, head, node);
}

static inline void list_del(struct list_node *node)
{
	node->prev->next = node->next;
	node->next->prev = node->prev;
	node->prev = node->next = NULL;
}

/* The element that embeds @node as @member. */
#define list_entry(node, type, member) ((type *)((char *)(node)-offsetof(type, member)))

/* The first element of @head, or NULL. */
#define list_first(head, type, member)                                                             \
	(list_empty(head) ? NULL : list_entry((head)->next, type, member))

/* Every node of @head; the current one may be deleted (@tmp holds the next). */
#define list_for_each_safe(pos, tmp, head)                                                         \
	for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head);                           \
	     (pos) = (tmp), (tmp) = (pos)->next)

#endif
