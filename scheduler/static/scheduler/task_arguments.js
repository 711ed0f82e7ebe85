// The schedule page's short forms of arguments (scheduler.admin_arguments): only the chosen task's
// is shown. Without this script every one is shown, each saying which task it is for.
"use strict";
(function () {
    function chosenTask(form) {
        const registered = form.elements.namedItem("regtask");
        const custom = form.elements.namedItem("task");
        return (registered && registered.value) || (custom && custom.value.trim()) || "";
    }

    function showChosen(form) {
        const task = chosenTask(form);
        for (const fieldset of form.querySelectorAll("fieldset.task-arguments")) {
            const marked = fieldset.querySelector("[data-for-task]");
            const chosen = marked !== null && marked.dataset.forTask === task;
            fieldset.hidden = !chosen;
            fieldset.style.display = chosen ? "" : "none";
            // A hidden field is not sent either, so what it holds never goes into the kwargs.
            for (const control of fieldset.querySelectorAll("input, select, textarea")) {
                control.disabled = !chosen;
            }
        }
    }

    document.addEventListener("DOMContentLoaded", function () {
        const form = document.getElementById("periodictask_form");
        if (form === null) {
            return;
        }
        showChosen(form);
        for (const name of ["regtask", "task"]) {
            const box = form.elements.namedItem(name);
            if (box !== null) {
                box.addEventListener("change", function () { showChosen(form); });
                box.addEventListener("input", function () { showChosen(form); });
            }
        }
    });
})();
