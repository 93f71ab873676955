package net.clat.app

import android.app.Activity
import android.app.AlertDialog
import android.content.Intent
import android.os.Handler
import android.os.Looper
import android.text.Editable
import android.text.TextWatcher
import android.widget.ArrayAdapter
import android.widget.EditText
import android.widget.LinearLayout
import android.widget.ListView
import android.widget.RadioButton
import android.widget.RadioGroup
import net.clat.app.logic.AppEntry
import net.clat.app.logic.AppPicker
import net.clat.app.logic.AppSelection

/**
 * The per-app picker: all apps, only the ticked ones, or all but the ticked ones. The list holds
 * launcher apps only: the manifest's `<queries>` entry for MAIN/LAUNCHER makes exactly those
 * visible to PackageManager.queryIntentActivities from API 30
 * (developer.android.com/training/package-visibility), without QUERY_ALL_PACKAGES. Ordering and
 * filtering: [AppPicker]. The result goes to [onChosen] (stored in UserPrefs by the caller).
 */
class AppPickerDialog(
    private val activity: Activity,
    initial: AppSelection,
    private val onChosen: (AppSelection) -> Unit,
) {
    private var selection = initial
    private var apps: List<AppEntry> = emptyList()
    private var query = ""
    private val list = ListView(activity).apply { choiceMode = ListView.CHOICE_MODE_MULTIPLE }
    private var rows: List<AppEntry> = emptyList()

    fun show() {
        val pad = (16 * activity.resources.displayMetrics.density).toInt()
        val modes = RadioGroup(activity)
        val labels = listOf(
            AppSelection.Mode.ALL to "All apps use the CLAT",
            AppSelection.Mode.ONLY to "Only the ticked apps",
            AppSelection.Mode.EXCEPT to "All apps except the ticked ones",
        )
        labels.forEachIndexed { i, (mode, text) ->
            modes.addView(RadioButton(activity).apply {
                id = i + 1
                this.text = text
                isChecked = selection.mode == mode
            })
        }
        modes.setOnCheckedChangeListener { _, id -> selection = selection.copy(mode = labels[id - 1].first) }
        val filter = EditText(activity).apply {
            hint = "Filter by name or package"
            addTextChangedListener(object : TextWatcher {
                override fun beforeTextChanged(s: CharSequence?, a: Int, b: Int, c: Int) {}
                override fun onTextChanged(s: CharSequence?, a: Int, b: Int, c: Int) {}
                override fun afterTextChanged(s: Editable?) {
                    query = s?.toString().orEmpty()
                    refresh()
                }
            })
        }
        list.setOnItemClickListener { _, _, pos, _ ->
            rows.getOrNull(pos)?.let { selection = AppPicker.toggle(selection, it.packageName, list.isItemChecked(pos)) }
        }
        val col = LinearLayout(activity).apply {
            orientation = LinearLayout.VERTICAL
            setPadding(pad, pad / 2, pad, 0)
            addView(modes)
            addView(filter)
            // A fixed height: a dialog's custom view wraps its content, so a weighted list would
            // get no room at all.
            val listHeight = (320 * activity.resources.displayMetrics.density).toInt()
            addView(list, LinearLayout.LayoutParams(LinearLayout.LayoutParams.MATCH_PARENT, listHeight, 0f))
        }
        AlertDialog.Builder(activity)
            .setTitle("Apps through the CLAT")
            .setView(col)
            .setNegativeButton("Cancel", null)
            .setPositiveButton("Save") { _, _ ->
                onChosen(if (selection.mode == AppSelection.Mode.ALL) AppSelection.ALL else selection)
            }
            .show()
        loadApps()
    }

    /** Labels come from each app's resources, which is slow with many apps: off the main thread. */
    private fun loadApps() {
        val pm = activity.packageManager
        val main = Handler(Looper.getMainLooper())
        Thread({
            val launcher = Intent(Intent.ACTION_MAIN).addCategory(Intent.CATEGORY_LAUNCHER)
            @Suppress("DEPRECATION") // the flags-as-int overload: API 24..32 have no other
            val found = pm.queryIntentActivities(launcher, 0).map {
                AppEntry(it.loadLabel(pm).toString(), it.activityInfo.packageName)
            }
            main.post {
                apps = found
                refresh()
            }
        }, "clat-app-list").apply { isDaemon = true }.start()
    }

    private fun refresh() {
        rows = AppPicker.rows(apps, selection, activity.packageName, query)
        list.adapter = ArrayAdapter(
            activity,
            android.R.layout.simple_list_item_multiple_choice,
            rows.map { if (it.label == it.packageName) it.packageName else "${it.label}\n${it.packageName}" },
        )
        val selected = selection.packages.toSet()
        rows.forEachIndexed { i, e -> list.setItemChecked(i, e.packageName in selected) }
    }
}
