// The feed: posts with like and comment buttons whose counters update live.
//
// HTTP does the changes (GET/POST /api/posts, likes, comments, POST /api/uploads for the
// image); the WebSocket pushes what others cause: "post_updated" for every post shown (the
// page subscribes to topic post:<id>) and "notification" for likes, comments and mentions
// of one's own posts. PROTOCOL.md sections 3 (Posts, uploads) and 6 (subscribe, post_updated).

import { $, clock, el, labUrl } from "./dom.js";

// Each post shown is one "subscribe" after every (re)connect, sent in one burst with the
// resume and the queued chat lines: the rate limit's burst is 40 messages.
const PAGE = 10; // posts loaded at once
const MAX_SHOWN = 20; // posts kept in the page; the oldest goes (and is unsubscribed) past it

/**
 * @param {{api: Function, request: Function, isOpen: () => boolean, notice: (text: string) => void}} lab
 */
export function createFeed(lab) {
  const ui = {
    form: document.getElementById("post-form"),
    text: $("post-text"),
    file: $("post-file"),
    submit: $("post-submit"),
    status: $("post-status"),
    refresh: $("feed-refresh"),
    list: $("feed"),
  };
  const posts = new Map(); // id -> {post, li, liked, comments: <ol> or null}

  function subscribe(id) {
    if (!lab.isOpen()) return; // resubscribed by connected()
    lab.request({ type: "subscribe", topic: `post:${id}` }).catch((error) => {
      if (!error.closed) lab.notice(`could not follow post ${id}: ${error.message}`);
    });
  }

  function counters(entry) {
    const { post, li, liked } = entry;
    const like = li.querySelector("[data-testid=like]");
    like.setAttribute("aria-pressed", String(liked));
    like.querySelector(".label").textContent = liked ? "Liked" : "Like";
    li.querySelector("[data-testid=likes]").textContent = String(post.likes);
    li.querySelector("[data-testid=comments]").textContent = String(post.comments);
  }

  function render(post) {
    const known = posts.get(post.id);
    if (known) {
      Object.assign(known.post, post);
      counters(known);
      return known;
    }
    const li = el(
      "li",
      { class: "post", "data-post-id": post.id, "aria-labelledby": `post-${post.id}-by` },
      el(
        "div",
        { class: "post-head" },
        el("span", { class: "from", id: `post-${post.id}-by` }, post.author.username),
        el("time", {}, clock(post.created_at)),
        el("span", { class: "post-id" }, `post ${post.id}`),
      ),
      el("p", { class: "post-text" }, post.text),
      post.image
        ? el("img", { src: labUrl(post.image).href, alt: `image posted by ${post.author.username}`, "data-testid": "post-image", loading: "lazy" })
        : null,
      el(
        "div",
        { class: "post-actions" },
        el(
          "button",
          { type: "button", class: "secondary small", "data-testid": "like", "aria-pressed": "false" },
          el("span", { class: "label" }, "Like"),
          " ",
          el("span", { class: "counter", "data-testid": "likes", "aria-label": "likes" }, "0"),
        ),
        el(
          "button",
          { type: "button", class: "secondary small", "data-testid": "comment", "aria-expanded": "false" },
          "Comments ",
          el("span", { class: "counter", "data-testid": "comments", "aria-label": "comments" }, "0"),
        ),
      ),
    );
    const entry = { post: { ...post }, li, liked: false, comments: null };
    posts.set(post.id, entry);
    li.querySelector("[data-testid=like]").addEventListener("click", () => toggleLike(entry));
    li.querySelector("[data-testid=comment]").addEventListener("click", () => toggleComments(entry));
    counters(entry);
    // Newest first, by id: a post fetched late (a notification's) still lands in its place.
    const after = [...ui.list.children].find((child) => Number(child.dataset.postId) < post.id);
    ui.list.insertBefore(li, after ?? null);
    subscribe(post.id);
    while (posts.size > MAX_SHOWN) forget(Math.min(...posts.keys()));
    return entry;
  }

  function forget(id) {
    posts.get(id).li.remove();
    posts.delete(id);
    if (lab.isOpen()) lab.request({ type: "unsubscribe", topic: `post:${id}` }).catch(() => {});
  }

  async function toggleLike(entry) {
    const button = entry.li.querySelector("[data-testid=like]");
    button.disabled = true;
    try {
      const answer = await lab.api(entry.liked ? "DELETE" : "POST", `api/posts/${entry.post.id}/like`);
      entry.liked = answer.liked;
      Object.assign(entry.post, answer.post);
      counters(entry);
    } catch (error) {
      lab.notice(`like failed: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  }

  function commentLine(comment) {
    return el(
      "li",
      { "data-comment-id": comment.id },
      el("span", { class: "from" }, comment.author.username),
      " ",
      el("span", { class: "text" }, comment.text),
    );
  }

  async function toggleComments(entry) {
    const button = entry.li.querySelector("[data-testid=comment]");
    if (entry.comments) {
      entry.comments.remove();
      entry.comments = null;
      button.setAttribute("aria-expanded", "false");
      return;
    }
    const list = el("ol", { class: "comments", "data-testid": "comment-list", "aria-live": "polite" });
    const input = el("input", { name: "text", maxlength: 4000, autocomplete: "off", "data-testid": "comment-input" });
    const form = el(
      "form",
      { class: "comment-form", novalidate: true },
      el("label", { class: "comment-label" }, el("span", { class: "visually-hidden" }, "Your comment"), input),
      el("button", { type: "submit", class: "small", "data-testid": "comment-send" }, "Comment"),
    );
    input.placeholder = "Write a comment…";
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      try {
        const answer = await lab.api("POST", `api/posts/${entry.post.id}/comments`, { text });
        input.value = "";
        list.append(commentLine(answer.comment));
        Object.assign(entry.post, answer.post);
        counters(entry);
      } catch (error) {
        lab.notice(`comment failed: ${error.message}`);
      }
    });
    entry.comments = el("div", { class: "comment-box" }, list, form);
    entry.li.append(entry.comments);
    button.setAttribute("aria-expanded", "true");
    input.focus();
    try {
      const answer = await lab.api("GET", `api/posts/${entry.post.id}/comments`);
      list.replaceChildren(...answer.comments.map(commentLine));
    } catch (error) {
      lab.notice(`could not load comments: ${error.message}`);
    }
  }

  async function load() {
    try {
      const answer = await lab.api("GET", `api/posts?limit=${PAGE}`);
      for (const post of answer.posts.reverse()) render(post);
    } catch (error) {
      lab.notice(`could not load the feed: ${error.message}`);
    }
  }

  ui.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = ui.text.value.trim();
    const file = ui.file.files[0];
    if (!text) {
      ui.status.textContent = "write some text (an image is optional)";
      return;
    }
    ui.submit.disabled = true;
    try {
      let image;
      if (file) {
        // The bytes go over HTTP (multipart, streamed to disk by the server); the post, and
        // everything said about it over the socket, carries only the URL.
        ui.status.textContent = `uploading ${file.name} (${file.size.toLocaleString("en")} B)…`;
        const body = new FormData();
        body.append("file", file);
        image = (await lab.api("POST", "api/uploads", body)).url;
      }
      const answer = await lab.api("POST", "api/posts", image ? { text, image } : { text });
      render(answer.post);
      ui.form.reset();
      ui.status.textContent = `posted (post ${answer.post.id})`;
    } catch (error) {
      ui.status.textContent = `not posted: ${error.message}`;
    } finally {
      ui.submit.disabled = false;
    }
  });

  ui.refresh.addEventListener("click", load);

  return {
    load,
    /** After every "welcome": topics belong to a socket, so a new socket subscribes again. */
    connected() {
      for (const id of posts.keys()) subscribe(id);
    },
    /** A "post_updated" from the socket: new counters for a post on the page. */
    updated(message) {
      const entry = posts.get(message.post_id);
      if (!entry) return;
      entry.post.likes = message.likes;
      entry.post.comments = message.comments;
      counters(entry);
    },
    /** A notification about a post not on the page yet (a new post mentioning us): fetch it. */
    async noticed(note) {
      if (!note.post_id || posts.has(note.post_id)) return;
      try {
        render((await lab.api("GET", `api/posts/${note.post_id}`)).post);
      } catch {
        // deleted or unreachable: the notification itself still shows
      }
    },
    clear() {
      posts.clear();
      ui.list.replaceChildren();
    },
  };
}
